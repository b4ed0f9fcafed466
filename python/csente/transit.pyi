from collections.abc import Callable, Mapping
from typing import Any

class URI(str):
    """A transit ``~r`` value (java.net.URI on the JVM): the URI text, kept apart from plain strings."""

class WriteHandler:
    """How to write values of one Python type, like transit-clj's ``write-handler``."""

    @property
    def tag(self) -> str: ...
    @property
    def rep(self) -> Callable[[Any], Any]: ...
    @property
    def string_rep(self) -> Callable[[Any], str] | None: ...
    def __init__(
        self, tag: str, rep: Callable[[Any], Any], string_rep: Callable[[Any], str] | None = None
    ) -> None: ...

def dumps(value: Any, *, verbose: bool = False, handlers: Mapping[type, WriteHandler] | None = None) -> str: ...
def loads(
    data: str | bytes,
    *,
    handlers: Mapping[str, Callable[[Any], Any]] | None = None,
    max_depth: int = 256,
    max_size: int = 64 * 1024 * 1024,
) -> Any: ...
def dumps_msgpack(value: Any, *, handlers: Mapping[type, WriteHandler] | None = None) -> bytes: ...
def loads_msgpack(
    data: bytes,
    *,
    handlers: Mapping[str, Callable[[Any], Any]] | None = None,
    max_depth: int = 256,
    max_size: int = 64 * 1024 * 1024,
) -> Any: ...
