"""``python -m sente``: same as the ``sente`` command."""

import sys

from .cli import main

sys.exit(main())
