"""Sente's client for Python: WebSocket (picows) or Ajax long-polling (aiohttp), or :auto, as Sente's cljs client.

``async with connect(url, csrf_token=..., headers=...) as client`` gives a connected :class:`Client`;
:class:`SyncClient` offers the same methods to plain scripts (its loop runs in a background thread).
The protocol logic lives in :mod:`sente.protocol.client`; this package does the I/O.
"""

from ..protocol.client import ClientState, LastClose, StateChange, exp_backoff, is_cb_error
from .api import Client, connect
from .errors import ChskClosed, ChskError, ChskTimeout, ConnectionRejected, ConnectTimeout, SenteError
from .messages import ClientEventMsg, WireRecord
from .sync import SyncClient

__all__ = [
    "ChskClosed",
    "ChskError",
    "ChskTimeout",
    "Client",
    "ClientEventMsg",
    "ClientState",
    "ConnectTimeout",
    "ConnectionRejected",
    "LastClose",
    "SenteError",
    "StateChange",
    "SyncClient",
    "WireRecord",
    "connect",
    "exp_backoff",
    "is_cb_error",
]
