"""One accepted WebSocket: picows delivers its frames to a :class:`WsConnection`, which reports messages to a
:class:`WsHandler` (the server) and writes what the server sends.

Behaviour: text frames reach the handler as ``str`` (invalid UTF-8 closes 1007), binary as
``bytes``; fragments are reassembled; a message over ``max_message_size`` (default 4 MiB, like
http-kit's ``:max-ws``) closes 1009; malformed frames close 1002 (picows); a frame with RSV bits set
closes 1002 (no extension is ever negotiated); protocol PINGs are answered with PONG (here, not by
picows's auto-pong, which answers before any check); a client close is echoed and reported with its
code (a code an endpoint must not send, such as 1006 or 5000, or a 1-byte close body, is answered
1002; a reason that is not UTF-8, 1007).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from sente.transport.handshake import HttpResponse, UpgradeRequest

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_NO_STATUS = 1005  # RFC 6455 §7.4.1: reported when a close frame carries no code


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
        "_fd",
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
        self._fd = _socket_fd(raw)
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
                reply, problem = _close_reply(frame)
                if problem is not None:  # a valid code of the peer's own (1003, 3000-4999...) is not a failure
                    self.failed = f"invalid close frame ({problem})"
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


def _socket_fd(raw: asyncio.Transport) -> int:
    """The descriptor :func:`csente.fanout.write_frame` may ``send`` frames on directly: a plain TCP socket's; -1
    under TLS (the bytes must go through the transport to be encrypted) or without a socket."""
    sock = raw.get_extra_info("socket")
    if sock is None or raw.get_extra_info("ssl_object") is not None:
        return -1
    return int(sock.fileno())


def _close_reply(frame: WSFrame) -> tuple[int, str | None]:
    """The code to answer a peer's close frame with, and what is wrong with the frame: its own code when valid (none:
    1000) and None, else 1002 or 1007 and the reason. (picows refuses some bad frames itself and answers them 1002
    or 1007, e.g. code 2999 or a reason that is not UTF-8; 1006 and 5000, for instance, reach us.)"""
    if frame.payload_size == 0:
        return 1000, None
    if frame.payload_size == 1:
        return 1002, "a 1-byte close payload"
    code = int.from_bytes(frame.get_payload_as_bytes()[:2], "big")
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        # 1004-1006 and 1015 must not be sent; below 1000, 1016-2999 and 5000+ are not assigned
        return 1002, f"close code {code}"
    try:
        frame.get_payload_as_bytes()[2:].decode("utf-8")
    except UnicodeDecodeError:
        return 1007, "a close reason that is not UTF-8"
    return code, None
