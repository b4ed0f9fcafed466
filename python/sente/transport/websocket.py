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

Behaviour: text frames reach the handler as ``str`` (invalid UTF-8 closes 1007), binary as
``bytes``; fragments are reassembled; a message over ``max_message_size`` (default 4 MiB, like
http-kit's ``:max-ws``) closes 1009; malformed frames close 1002 (picows); a frame with RSV bits set
closes 1002 (no extension is ever negotiated); protocol PINGs are answered with PONG (here, not by
picows's auto-pong, which answers before any check); a client close is echoed and reported with its
code (a code an endpoint must not send, such as 1006 or 5000, or a 1-byte close body, is answered
1002; a reason that is not UTF-8, 1007). The client-caused failures are WARNING lines at most, rate-limited.
Bytes a client pipelines after its upgrade request, before the 101, are dropped by uvicorn.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import sys
from base64 import b64decode
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast
from urllib.parse import unquote

from picows import WSAutoPingStrategy, WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from sente.protocol.ratelog import RateLimitedLog
from sente.protocol.requests import Cookies, HeadLines, QueryPairs
from sente.transport.frames import build_binary_frame, build_close_frame, build_frame, build_text_frame

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

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_NO_STATUS = 1005  # RFC 6455 §7.4.1: reported when a close frame carries no code


# --------------------------------------------------------------------------------------------
# Public value types


@dataclass(slots=True)
class UpgradeRequest:
    """The client's upgrade request, as the handler sees it."""

    method: str
    path: str  # percent-decoded path, without the query
    query_string: str  # the raw query string, undecoded, without "?"
    query: Sequence[tuple[str, str]]  # decoded (name, value) pairs, in order, blanks kept
    headers: Sequence[tuple[str, str]]  # (lower-case name, value), in order
    cookies: Mapping[str, str]  # from the Cookie header(s); first occurrence of a name wins
    client: tuple[str, int] | None  # peer (host, port)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def param(self, name: str) -> str | None:
        """First value of query parameter ``name``, or None."""
        for k, v in self.query:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class HttpResponse:
    """A plain HTTP response sent instead of the 101 when an upgrade is refused."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class WsHandler(Protocol):
    """What the server layer implements; all callbacks run on the event loop, synchronously."""

    def ws_accept(self, request: UpgradeRequest) -> HttpResponse | None:
        """None accepts (101); an HttpResponse is sent as-is and the socket closed."""
        ...

    def ws_opened(self, conn: WsConnection) -> None: ...

    def ws_message(self, conn: WsConnection, data: str | bytes) -> None: ...

    def ws_closed(self, conn: WsConnection, code: int | None) -> None:
        """``code``: the peer's close code (1005 if its close frame had none), else the code we
        sent if we closed first, else None (connection dropped without a close frame)."""
        ...


# --------------------------------------------------------------------------------------------
# One connection


class WsConnection(WSListener):
    """One accepted WebSocket; picows delivers its frames here (a ``picows.WSListener``)."""

    __slots__ = (
        "_close_timeout",
        "_close_timer",
        "_closing",
        "_frag_parts",
        "_frag_size",
        "_frag_text",
        "_handler",
        "_loop",
        "_max_size",
        "_raw",
        "_tr",
        "closed",
        "failed",
        "request",
        "write_paused",
    )

    request: UpgradeRequest
    closed: bool
    failed: str | None
    """Why this side failed the connection (a protocol error of the peer's), else None."""
    write_paused: bool

    def __init__(
        self,
        request: UpgradeRequest,
        handler: WsHandler,
        raw: asyncio.Transport,
        max_message_size: int,
        close_timeout: float,
    ) -> None:
        self.request = request
        self.closed = False
        self.failed = None
        self.write_paused = False
        self._handler = handler
        self._raw = raw
        self._tr: WSTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._max_size = max_message_size
        self._close_timeout = close_timeout
        self._close_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._frag_parts: list[bytes] | None = None
        self._frag_size = 0
        self._frag_text = False

    # -- sending ------------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """Send one text frame (dropped silently once closing)."""
        tr = self._tr
        if tr is not None and not self._closing:
            tr.send(_TEXT, text)

    def send_bytes(self, data: bytes) -> None:
        """Send one binary frame (dropped silently once closing)."""
        tr = self._tr
        if tr is not None and not self._closing:
            tr.send(_BINARY, data)

    def send_frame(self, frame: bytes) -> None:
        """Write prebuilt frame bytes (see :func:`build_text_frame`) as-is on the socket."""
        if not self._closing and not self.closed:
            self._raw.write(frame)

    def pause_reading(self) -> None:
        """Stop reading the socket (backpressure: the peer's writes queue in the kernel, then block)."""
        if not self.closed:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self._raw.resume_reading()

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued in the transport's write buffer (not yet accepted by the kernel)."""
        return self._raw.get_write_buffer_size()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake: send a close frame, drop the TCP connection when the peer
        answers or after ``close_timeout``. Idempotent."""
        tr = self._tr
        if self._closing or self.closed or tr is None:
            return
        self._closing = True
        tr.send_close(WSCloseCode(code), reason.encode("utf-8") if reason else None)
        self._close_timer = self._loop.call_later(self._close_timeout, self._abort)

    def _abort(self) -> None:
        self._close_timer = None
        if self._tr is not None:
            self._tr.disconnect(False)

    def _fail(self, code: int, reason: str) -> None:
        """Protocol failure detected here: close with ``code``; ignore what the peer still sends."""
        self._frag_parts = None
        self.failed = reason
        self.close(code, reason)

    # -- picows callbacks -----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._tr = transport
        self._handler.ws_opened(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:  # no extension was negotiated (RFC 6455 §5.2)
            if not self._closing:
                self._fail(1002, "reserved bits set")
            return
        if t is _TEXT or t is _BINARY:
            if self._closing:
                return
            if self._frag_parts is not None:
                self._fail(1002, "new data frame inside a fragmented message")
            elif frame.fin:
                if t is _TEXT:
                    try:
                        text = frame.get_payload_as_utf8_text()
                    except UnicodeDecodeError:
                        self._fail(1007, "invalid UTF-8")
                        return
                    self._handler.ws_message(self, text)
                else:
                    self._handler.ws_message(self, frame.get_payload_as_bytes())
            else:
                self._frag_parts = [frame.get_payload_as_bytes()]
                self._frag_size = frame.payload_size
                self._frag_text = t is _TEXT
        elif t is _CONT:
            if self._closing:
                return
            parts = self._frag_parts
            if parts is None:
                self._fail(1002, "continuation frame without a message to continue")
                return
            self._frag_size += frame.payload_size
            if self._frag_size > self._max_size:
                self._fail(1009, "message too big")
                return
            parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                self._frag_parts = None
                data = b"".join(parts)
                if self._frag_text:
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        self._fail(1007, "invalid UTF-8")
                        return
                    self._handler.ws_message(self, text)
                else:
                    self._handler.ws_message(self, data)
        elif t is _CLOSE:
            if not self._closing:
                # Peer-initiated: echo its code (RFC 6455 §5.5.1), or fail with 1002 (a code an endpoint must not
                # send, a 1-byte body) or 1007 (a reason that is not UTF-8); then the server drops TCP first.
                self._closing = True
                reply = _close_reply(frame)
                if reply >= 1002:
                    self.failed = "invalid close frame"
                transport.send_close(WSCloseCode(reply))
            transport.disconnect()
        elif t is _PING and not self._closing:
            transport.send_pong(frame.get_payload_as_bytes())
        # PONG needs nothing.

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        hs = transport.close_handshake
        if not self._closing and self.failed is None and hs is not None and hs.sent is not None and hs.recv is None:
            self.failed = f"malformed frame (closed {hs.sent.code.value})"  # picows's parser failed it
        self.closed = True
        self._closing = True
        self._frag_parts = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        code: int | None = None
        if hs is not None:
            if hs.recv is not None:
                code = hs.recv.code.value or _NO_STATUS
            elif hs.sent is not None:
                code = hs.sent.code.value
        self._handler.ws_closed(self, code)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False


def _close_reply(frame: WSFrame) -> int:
    """The code to answer a peer's close frame with: its own when valid (none: 1000), else 1002 or 1007."""
    if frame.payload_size == 0:
        return 1000
    if frame.payload_size == 1:
        return 1002
    code = int.from_bytes(frame.get_payload_as_bytes()[:2], "big")
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return 1002  # 1004-1006 and 1015 must not be sent; below 1000, 1016-2999 and 5000+ are not assigned
    try:
        frame.get_payload_as_bytes()[2:].decode("utf-8")
    except UnicodeDecodeError:
        return 1007
    return code


# --------------------------------------------------------------------------------------------
# Handshake helpers


_intern = sys.intern


def _parse_upgrade(data: bytes, client: tuple[str, int] | None) -> UpgradeRequest:
    """Parse the request uvicorn re-serialised: ``METHOD target HTTP/1.1`` + ``name: value`` lines."""
    head, _, _ = data.partition(b"\r\n\r\n")
    request_line, _, block = head.partition(b"\r\n")
    method, _, rest = request_line.partition(b" ")
    target, _, _version = rest.rpartition(b" ")
    raw_path, _, raw_query = target.partition(b"?")
    query_string = raw_query.decode("latin-1")
    # Kept as the request's own bytes, parsed on each read: every open connection keeps its request (event
    # messages carry it), and lists of small strings cost ~1.9 KB per idle connection.
    headers = HeadLines(block)
    return UpgradeRequest(
        method=_intern(method.decode("latin-1")),
        path=unquote(raw_path.decode("latin-1")),
        query_string=query_string,
        query=QueryPairs(query_string),
        headers=headers,
        cookies=Cookies(headers),
        client=client,
    )


def _handshake_error(request: UpgradeRequest) -> HttpResponse | None:
    """RFC 6455 §4.2.1 checks uvicorn has not already made (it checked Upgrade and Connection)."""
    if request.method != "GET":
        return HttpResponse(405, [("Allow", "GET"), ("Content-Type", "text/plain")], b"Method Not Allowed")
    if request.header("sec-websocket-version") != "13":
        return HttpResponse(
            426,
            [("Sec-WebSocket-Version", "13"), ("Content-Type", "text/plain")],
            b"Unsupported WebSocket version",
        )
    key = request.header("sec-websocket-key") or ""
    try:
        ok = len(b64decode(key.encode("ascii"), validate=True)) == 16
    except (UnicodeEncodeError, binascii.Error):
        ok = False
    if not ok:
        return HttpResponse(400, [("Content-Type", "text/plain")], b"Missing or invalid Sec-WebSocket-Key")
    return None


def _http_response_bytes(resp: HttpResponse) -> bytes:
    try:
        phrase = HTTPStatus(resp.status).phrase
    except ValueError:
        phrase = ""
    out = [f"HTTP/1.1 {resp.status} {phrase}\r\n"]
    for name, value in resp.headers:
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        if name.lower() in ("content-length", "connection", "transfer-encoding"):
            continue
        out.append(f"{name}: {value}\r\n")
    out.append(f"Content-Length: {len(resp.body)}\r\nConnection: close\r\n\r\n")
    return "".join(out).encode("latin-1") + resp.body


def _canonical_upgrade(key: str) -> bytes:
    return (
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key.encode("ascii") + b"\r\n\r\n"
    )


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
            request = _parse_upgrade(data, client)
            refusal = _handshake_error(request)
            handler: WsHandler | None = None
            if refusal is None:
                handler = self._options.handler_factory()
                refusal = handler.ws_accept(request)
            payload = _http_response_bytes(refusal) if refusal is not None else None
        except Exception:
            _LOG.exception("WebSocket upgrade failed")
            payload = _http_response_bytes(HttpResponse(500, [("Content-Type", "text/plain")], b""))
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
        self._feed(_canonical_upgrade(key))

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
