"""The client's WebSocket over picows (``ws_connect``): one :class:`WsLink` per connection attempt.

The link only moves messages: text frames become ``str``, binary frames ``bytes`` (fragments are
joined), and the end of the connection is reported once with the close code the server sent (1006 when
the TCP connection ended without a close frame). All protocol decisions are the core's
(:mod:`sente.protocol.client`). A refused upgrade raises :class:`UpgradeRefused` with the HTTP status
and body, so a 403 ``Bad CSRF token`` reaches the caller as such.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence

from picows import WSCloseCode, WSFrame, WSInvalidStatusError, WSListener, WSMsgType, WSTransport, ws_connect

ABNORMAL_CLOSURE = 1006
CLOSE_WAIT_S = 1.0


class UpgradeRefused(Exception):
    """The server answered the WebSocket upgrade with an HTTP status other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket upgrade refused: HTTP {status} {body[:200]!r}")
        self.status = status
        self.body = body


class WsLink:
    """One WebSocket connection: ``open``, ``send``, ``close``; frames and the end go to the callbacks."""

    def __init__(
        self,
        on_message: Callable[[str | bytes], None],
        on_closed: Callable[[int, str, bool], None],
    ) -> None:
        self._on_message = on_message
        self._on_closed = on_closed
        self._transport: WSTransport | None = None
        self._fragments: list[bytes] = []
        self._fragment_type: WSMsgType | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._ended = False

    async def open(self, url: str, headers: Sequence[tuple[str, str]], timeout: float,
                   ssl_context: ssl.SSLContext | None = None) -> None:
        """Connect and upgrade; raises :class:`UpgradeRefused`, ``OSError`` or a picows ``WSError``.

        ``ssl_context`` verifies a ``wss://`` server (None: the system's CAs)."""
        try:
            await ws_connect(
                lambda: _Listener(self),
                url,
                ssl_context=ssl_context,
                extra_headers=list(headers),
                websocket_handshake_timeout=timeout,
                max_redirects=0,
            )
        except WSInvalidStatusError as e:
            response = e.response
            status = int(response.status) if response is not None else 0
            body = e.raw_body if e.raw_body is not None else (response.body or b"" if response is not None else b"")
            raise UpgradeRefused(status, body) from e

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._ended

    def send(self, data: str | bytes) -> None:
        if self._transport is None or self._ended:
            return
        if isinstance(data, str):
            self._transport.send(WSMsgType.TEXT, data.encode("utf-8"))
        else:
            self._transport.send(WSMsgType.BINARY, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (the end is reported when the server answers or the socket drops)."""
        tr = self._transport
        if tr is None or self._ended:
            return
        if not tr.is_close_frame_sent:
            tr.send_close(WSCloseCode(code), reason.encode("utf-8") if reason else None)
        # wait for the server's close frame (so the close is clean), but not forever
        asyncio.get_running_loop().call_later(CLOSE_WAIT_S, self._force_disconnect)

    def _force_disconnect(self) -> None:
        if self._transport is not None and not self._ended:
            self._transport.disconnect(graceful=False)

    # ------------------------------------------------------------------ picows callbacks

    def _connected(self, transport: WSTransport) -> None:
        self._transport = transport

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t == WSMsgType.CLOSE:
            self._close_code = frame.get_close_code().value
            self._close_reason = frame.get_close_reason() or ""
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode(self._close_code or 1000))
            transport.disconnect()
            return
        if t in (WSMsgType.TEXT, WSMsgType.BINARY):
            if frame.fin:
                self._deliver(t, frame.get_payload_as_bytes())
            else:
                self._fragment_type, self._fragments = t, [frame.get_payload_as_bytes()]
        elif t == WSMsgType.CONTINUATION and self._fragment_type is not None:
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                kind, data = self._fragment_type, b"".join(self._fragments)
                self._fragment_type, self._fragments = None, []
                self._deliver(kind, data)
        # PING is answered by picows (enable_auto_pong); Sente never uses protocol pings.

    def _deliver(self, kind: WSMsgType, data: bytes) -> None:
        self._on_message(data.decode("utf-8") if kind == WSMsgType.TEXT else data)

    def _disconnected(self) -> None:
        if self._ended:
            return
        self._ended = True
        code = self._close_code if self._close_code is not None else ABNORMAL_CLOSURE
        self._on_closed(code, self._close_reason, self._close_code is not None)


class _Listener(WSListener):
    def __init__(self, link: WsLink) -> None:
        super().__init__()
        self.link = link

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.link._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.link._frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.link._disconnected()
