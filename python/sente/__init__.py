"""Sente for Python: a realtime channel-socket server and client, wire-compatible with Clojure's Sente."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .publisher import AsyncPublisher, Publisher

__all__ = ["AsyncPublisher", "Publisher"]


def __getattr__(name: str) -> Any:
    """``sente.Publisher`` and ``sente.AsyncPublisher``, imported on first use (they bring in redis-py)."""
    if name in __all__:
        from . import publisher

        return getattr(publisher, name)
    raise AttributeError(f"module 'sente' has no attribute {name!r}")
