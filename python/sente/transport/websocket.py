"""WebSocket transport: picows's Cython frame engine plugged into uvicorn's ``ws`` protocol slot.

Why: Sente serves both transports on one port. uvicorn serves HTTP (the Ajax long-poll and any other
routes, as an ASGI app); WebSocket upgrades on that same port are handed to picows, whose Cython
parser/writer costs about the same per message as a bare picows server, where uvicorn's ASGI
WebSocket path costs several times more (see bench/ws_bridge.py).

How it is wired (one mechanism, used for every upgrade):

1. ``uvicorn.Config(ws=make_ws_protocol_class(handler_factory))``. When uvicorn's HTTP protocol
   (httptools or h11) sees ``Upgrade: websocket`` it builds ``cls(config=, server_state=,
   app_state=)``, calls ``connection_made(transport)`` and then ``data_received(request_bytes)``
   with the request re-serialised from what it parsed, and finally ``transport.set_protocol``.
2. Our class is a subclass of picows's server protocol ``picows.picows.WSProtocol`` (constructed with
   the same arguments ``picows.ws_create_server`` uses). Its ``data_received`` parses uvicorn's
   bytes into an :class:`UpgradeRequest`, validates the handshake (RFC 6455 §4.2.1: GET,
   ``Sec-WebSocket-Key`` of 16 base64 bytes, version 13) and asks ``WsHandler.ws_accept``.
3. Refused: the :class:`HttpResponse` is written as a plain HTTP/1.1 response (status line, headers,
   ``Content-Length``, ``Connection: close``, body) and the socket is closed; picows is not involved.
4. Accepted: a minimal canonical upgrade request carrying the client's key is fed to picows through
   the standard ``asyncio.BufferedProtocol`` interface (``get_buffer``/``buffer_updated``). picows
   answers 101 with ``Sec-WebSocket-Accept`` and switches to frame parsing; from then on the socket's
   reads go straight into picows's buffer (the transport sees a BufferedProtocol after
   ``set_protocol``), and frames reach :class:`WsConnection`, a ``picows.WSListener``.

picows internals relied on: ``picows.picows.WSProtocol`` is not exported by ``picows`` and its
15-argument positional constructor is undocumented (it is what ``ws_create_server`` calls). The
project pins the picows version for that; ``tests/sente/transport/test_websocket.py`` fails loudly
if the version or the constructor changes.

What a connection does with the frames (close codes, fragments, PING/PONG) is :mod:`sente.transport.connection`'s;
the upgrade's HTTP side is :mod:`sente.transport.handshake`'s. Client-caused failures are WARNING lines at most,
rate-limited. Bytes a client pipelines after its upgrade request, before the 101, are dropped by uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from picows import WSAutoPingStrategy, WSListener

from sente.protocol.ratelog import RateLimitedLog
from sente.transport.connection import WsConnection, WsHandler
from sente.transport.frames import build_binary_frame, build_close_frame, build_frame, build_text_frame
from sente.transport.handshake import (
    HttpResponse,
    UpgradeRequest,
    canonical_upgrade,
    handshake_error,
    http_response_bytes,
    parse_upgrade,
)

if TYPE_CHECKING:
    from logging import LoggerAdapter

    from picows import WSUpgradeRequest

    class _PicowsServerProtocol(asyncio.BufferedProtocol):
        """Typing stand-in for ``picows.picows.WSProtocol`` (2.3.1); see the module docstring."""

        def __init__(
            self,
            host_port: str | None,
            ws_path: str | None,
            is_client_side: bool,
            ws_listener_factory: Callable[[WSUpgradeRequest], WSListener | None],
            logger: logging.Logger | LoggerAdapter[logging.Logger],
            disconnect_on_exception: bool,
            websocket_handshake_timeout: float | None,
            enable_auto_ping: bool,
            auto_ping_idle_timeout: float,
            auto_ping_reply_timeout: float,
            auto_ping_strategy: WSAutoPingStrategy,
            enable_auto_pong: bool,
            max_frame_size: int,
            extra_headers: object,
            read_buffer_init_size: int,
        ) -> None: ...

        def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
        def connection_lost(self, exc: Exception | None) -> None: ...
        def get_buffer(self, sizehint: int) -> memoryview: ...
        def buffer_updated(self, nbytes: int) -> None: ...
else:
    from picows.picows import WSProtocol as _PicowsServerProtocol

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HttpResponse",
    "UpgradeRequest",
    "WsConnection",
    "WsHandler",
    "build_binary_frame",
    "build_close_frame",
    "build_frame",
    "build_text_frame",
    "make_ws_protocol_class",
]

DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""Largest message accepted (after reassembly); larger closes 1009. http-kit's ``:max-ws`` default."""

_LOG = logging.getLogger("sente.transport.websocket")
_CLIENT_LOG = RateLimitedLog(_LOG)


class _PicowsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What picows logs through. Not a ``logging.Logger``, so picows does not build a child Logger per connection
    (``WSProtocol.connection_made`` does when given one: ~0.9 KB per idle connection); records go to _LOG.
    picows's per-connection lines ("New connection accepted", "Disconnected") go to DEBUG, and its ERROR for a
    client's malformed frame becomes a rate-limited WARNING: a client's fault, answered with a close code."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if isinstance(msg, str):
            if level == logging.ERROR and msg.startswith("WS parser error"):
                _CLIENT_LOG.warning("parser", msg, *args)
                return
            if level == logging.INFO and msg.startswith(("New connection accepted", "Disconnected")):
                level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


_PICOWS_LOG = _PicowsLog(_LOG, {})

# --------------------------------------------------------------------------------------------
# The protocol class in uvicorn's ws slot


@dataclass(frozen=True, slots=True)
class _Options:
    handler_factory: Callable[[], WsHandler]
    max_message_size: int
    close_timeout: float
    read_buffer_size: int


class _PicowsInUvicorn(_PicowsServerProtocol):
    """picows's server protocol with uvicorn's ws-protocol constructor and upgrade hand-over."""

    __slots__ = ("_conn", "_connections", "_pending", "_raw", "_upgraded")  # no per-connection __dict__

    _options: ClassVar[_Options]

    def __init__(
        self,
        config: Any = None,
        server_state: Any = None,
        app_state: Any = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(
            None,  # host_port (client side only)
            None,  # ws_path (client side only)
            False,  # is_client_side
            self._take_listener,
            _PICOWS_LOG,
            True,  # disconnect_on_exception: a raising handler closes its socket with 1011
            None,  # no handshake timeout: uvicorn has already read the request
            False,  # no auto-ping: Sente has its own keep-alive (protocol.md §2.4)
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # no auto-pong: on_ws_frame answers PINGs, after checking the frame (RSV bits)
            self._options.max_message_size,  # per frame; reassembled messages are checked in WsConnection
            None,  # extra_headers (client side only)
            self._options.read_buffer_size,
        )
        self._connections: set[Any] | None = server_state.connections if server_state is not None else None
        self._raw: asyncio.Transport | None = None
        self._pending: WsConnection | None = None
        self._conn: WsConnection | None = None
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._raw = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        if self._connections is not None:
            self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connections is not None:
            self._connections.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """First call: the upgrade request from uvicorn. Later calls (only on transports that
        ignore BufferedProtocol) are WebSocket bytes for picows."""
        if self._upgraded:
            self._feed(data)
            return
        self._upgraded = True
        raw = self._raw
        assert raw is not None
        peer = raw.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        try:
            request = parse_upgrade(data, client)
            refusal = handshake_error(request)
            handler: WsHandler | None = None
            if refusal is None:
                handler = self._options.handler_factory()
                refusal = handler.ws_accept(request)
            payload = http_response_bytes(refusal) if refusal is not None else None
        except Exception:
            _LOG.exception("WebSocket upgrade failed")
            payload = http_response_bytes(HttpResponse(500, [("Content-Type", "text/plain")], b""))
            handler = None
        if payload is not None or handler is None:
            raw.write(payload or b"")
            raw.close()
            return
        opts = self._options
        conn = WsConnection(request, handler, raw, opts.max_message_size, opts.close_timeout)
        self._pending = conn
        self._conn = conn
        key = request.header("sec-websocket-key") or ""
        self._feed(canonical_upgrade(key))

    def _take_listener(self, _request: WSUpgradeRequest) -> WSListener | None:
        conn, self._pending = self._pending, None
        return conn

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def shutdown(self) -> None:
        """Called by uvicorn on server shutdown: close 1001 (going away)."""
        if self._conn is not None and not self._conn.closed:
            self._conn.close(1001)
        elif self._raw is not None:
            self._raw.close()


def make_ws_protocol_class(
    handler_factory: Callable[[], WsHandler],
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    close_timeout: float = 2.0,
    read_buffer_size: int = 2048,
) -> type[asyncio.BufferedProtocol]:
    """The class to pass as ``uvicorn.Config(ws=...)``.

    ``handler_factory`` is called once per upgrade request (return a shared handler if you have
    one). ``close_timeout``: how long a server-initiated close waits for the peer's close frame
    before dropping the TCP connection. ``read_buffer_size``: initial per-connection read buffer
    (picows's floor, 2048, by default: it is most of an idle connection's memory; picows doubles it
    when a read fills it past 90%, up to the message size).
    """
    if max_message_size < 1:
        raise ValueError("max_message_size must be positive")
    options = _Options(handler_factory, max_message_size, close_timeout, read_buffer_size)
    return type("SenteWsProtocol", (_PicowsInUvicorn,), {"_options": options, "__slots__": ()})
