"""What transit's writers and reader share (see transit_rules.pyx); the public face is csente.transit."""

import datetime
from collections.abc import Callable
from typing import Any

EPOCH: datetime.datetime
CACHE_CODES: tuple[str, ...]

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
