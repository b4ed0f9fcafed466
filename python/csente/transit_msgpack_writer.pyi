"""Transit over MessagePack, writing (see transit_msgpack_writer.pyx); the public face is csente.transit."""

from collections.abc import Mapping
from typing import Any

from csente.transit_rules import WriteHandler

def dumps_msgpack(value: Any, *, handlers: Mapping[type, WriteHandler] | None = None) -> bytes: ...
