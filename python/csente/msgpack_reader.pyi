"""MessagePack reading as Sente's packer does it (see msgpack_reader.pyx); the public face is csente.msgpack."""

from typing import Any

class CachedKey:
    """A cache reference (ext 8) read outside a map-key position; ``key`` is what it refers to, or None."""

    @property
    def key(self) -> Any: ...
    def __init__(self, key: Any) -> None: ...

def loads(data: bytes | bytearray | memoryview, *, max_depth: int = 256, max_size: int = 67108864) -> Any: ...
