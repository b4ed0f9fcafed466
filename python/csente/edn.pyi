"""EDN codec: Clojure ``pr-str`` output and tools.reader 1.3.6 input (see edn.pyx)."""

from csente.edn_reader import loads as loads
from csente.edn_writer import dumps as dumps

__all__ = ["dumps", "loads"]
