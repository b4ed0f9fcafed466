"""Sente for Python: a realtime channel-socket server and client, wire-compatible with Clojure's Sente."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .protocol.backplane import Backplane, install_join_remote

if TYPE_CHECKING:
    from .publisher import AsyncPublisher, Publisher

__all__ = ["AsyncPublisher", "Publisher"]


def __getattr__(name: str) -> Any:
    """``sente.Publisher`` and ``sente.AsyncPublisher``, imported on first use (they bring in redis-py)."""
    if name in __all__:
        from . import publisher

        return getattr(publisher, name)
    raise AttributeError(f"module 'sente' has no attribute {name!r}")


def _join_redis(backplane: Backplane | None, url: str) -> Backplane:
    """``ChannelSocketServer(redis_url=...)``: the cluster layer composes the backplane (imported on first use,
    it brings in redis-py). Installed here, the outermost layer, so the server never imports the cluster."""
    from .cluster.composite import with_redis

    return with_redis(backplane, url)


install_join_remote(_join_redis)
