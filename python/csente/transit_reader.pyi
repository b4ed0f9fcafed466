"""The transit layer of reading, shared by the JSON and msgpack readers (see transit_reader.pyx)."""

from typing import Final

MARK: Final[object]
