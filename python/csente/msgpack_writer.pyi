"""MessagePack writing as Sente's packer does it (see msgpack_writer.pyx); the public face is csente.msgpack."""

from collections.abc import Sequence
from typing import Any

TYPED_SIZE: dict[str, int]

class EncodeError(TypeError):
    """A value Sente's msgpack packer cannot write; raised before any output is produced."""

class Ext:
    """An ext value of a type Sente does not define: the signed type and raw payload."""

    @property
    def type(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    def __init__(self, type: int, data: bytes) -> None: ...

class EncodedEvent:
    """An event packed alone, for :func:`pack_batch`."""

    @property
    def event(self) -> Any: ...
    @property
    def data(self) -> bytes: ...

def dumps(value: Any) -> bytes: ...
def encode_event(event: Any) -> EncodedEvent: ...
def pack_batch(events: Sequence[EncodedEvent]) -> bytes: ...
