"""EDN codec for Sente's default packer: Clojure ``pr-str`` on the way out, tools.reader on the way in.

The Python face of the codec; the writer (``dumps``) is edn_writer, the reader (``loads``) edn_reader.
"""

from csente.edn_reader import loads
from csente.edn_writer import dumps

__all__ = ["dumps", "loads"]
