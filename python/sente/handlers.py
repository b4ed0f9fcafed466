"""Handlers by event id, with a default: the registry behind ``Server.on`` / ``Client.on``.

Plain Python, no asyncio: how a handler's result is run (awaited by the server's router, spawned by
the client) stays with the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from csente.types import Keyword

from .protocol.events import event_id

H = TypeVar("H", bound=Callable[..., Any])


class Handlers(Generic[H]):
    __slots__ = ("_by_id", "default")

    def __init__(self) -> None:
        self._by_id: dict[Keyword, H] = {}
        self.default: H | None = None

    def on(self, event: str | Keyword) -> Callable[[H], H]:
        """Decorator registering the handler of one event id (``"ns/name"`` or a Keyword)."""
        key = event_id(event)

        def register(handler: H) -> H:
            self._by_id[key] = handler
            return handler

        return register

    def on_default(self, handler: H) -> H:
        """Decorator registering the handler for events with no handler of their own."""
        self.default = handler
        return handler

    def get(self, event: Keyword) -> H | None:
        """The handler of ``event`` (an event id): its own, else the default, else None."""
        return self._by_id.get(event, self.default)

    def __bool__(self) -> bool:
        """Whether any handler, the default included, is registered."""
        return bool(self._by_id) or self.default is not None
