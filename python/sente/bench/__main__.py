"""``python -m sente.bench``: the same as ``sente bench``."""

import sys

from .run import main

sys.exit(main())
