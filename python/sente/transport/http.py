"""uvicorn's httptools protocol with the limits a public server needs on the request head.

Why: uvicorn (0.55, httptools) reads a request head of any size and waits for it forever: one connection sending a
200 MiB header costs its worker hundreds of MB and tens of seconds of CPU, and connections that never finish a
head (or never send a byte) are held until the client leaves. Every request goes through this class, WebSocket
upgrades included (uvicorn parses the upgrade request before handing the socket to the ``ws`` protocol), so one
check covers both transports:

* **size**: a request line plus headers over ``max_head_bytes`` is answered ``431 Request Header Fields Too
  Large`` and the connection closed. The bytes are counted as they arrive, before the parser buffers them, so
  the memory a head can take is bounded by the limit.
* **count**: more than ``max_header_count`` header lines: 431 as well.
* **time**: a head not complete ``head_timeout`` seconds after the connection opened (or after the first byte
  of a later request on a keep-alive connection) is answered ``408 Request Timeout`` and closed: a silent
  connection, a slow-loris trickle, a half-sent upgrade. Idle keep-alive connections between requests are
  uvicorn's ``timeout_keep_alive``; an upgraded WebSocket is Sente's keep-alive's (``ws_kalive_ms``).
* **body time**: a request body not complete ``body_timeout`` seconds after its head is answered ``408`` and
  closed (just closed if the app already started its response): a slow-loris POST.

A refused connection is closed the way nginx does it ("lingering close"): the response is written, the write side
shut down, and what the client still sends is read and discarded for up to ``LINGER_S`` seconds before the socket
is closed, so the client reads the 431 instead of a connection reset.

Each refusal is reported to ``on_refused(reason)`` (``header_size``, ``header_count``, ``header_timeout``, and
``bad_request`` for what httptools cannot parse, answered 400 as uvicorn does), for the metrics and one
rate-limited log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeadLimits", "make_http_protocol_class"]

_CLOSE_RESPONSE = (
    b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
)
LINGER_S = 1.0
"""How long a refused connection's further bytes are read and discarded before it is closed."""
_REFUSALS = {
    "header_size": (431, b"Request Header Fields Too Large"),
    "header_count": (431, b"Request Header Fields Too Large"),
    "header_timeout": (408, b"Request Timeout"),
    "body_timeout": (408, b"Request Timeout"),
}


class HeadLimits:
    """The limits of :func:`make_http_protocol_class` and where refusals are reported."""

    __slots__ = ("body_timeout", "head_timeout", "max_head_bytes", "max_header_count", "on_refused")

    def __init__(self, max_head_bytes: int, max_header_count: int, head_timeout: float | None,
                 on_refused: Callable[[str], None] | None = None, *, body_timeout: float | None = None) -> None:
        if max_head_bytes < 64 or max_header_count < 1:
            raise ValueError("max_head_bytes must be at least 64 and max_header_count at least 1")
        self.max_head_bytes = max_head_bytes
        self.max_header_count = max_header_count
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.on_refused = on_refused


class _HeadRefused(Exception):
    pass


class _LimitedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring. ``_in_head``: between requests or inside a head (not yet complete)."""

    _limits: ClassVar[HeadLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._in_body = False
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: str | None = None
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self._unset_keepalive_if_required()
        limit = self._limits.max_head_bytes
        while data:
            if not self._in_head:
                self._feed(data)
                return
            room = limit - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                self._feed(data)
                return
            # Feed only what still fits; if the head is not complete by then, it is too large.
            chunk, data = data[:room], data[room:]
            self._head_bytes += len(chunk)
            if not self._feed(chunk):
                return
            if self._in_head and self._head_bytes >= limit:
                self._refuse("header_size")
                return

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False once the connection is closing or was handed to the WebSocket protocol."""
        if self.parser is None or self.transport.is_closing():
            return False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:  # a callback's error too (an unparsable URL in uvicorn's)
            if isinstance(e, httptools.HttpParserCallbackError) and self._refusal is not None:
                self._refuse(self._refusal)
                return False
            self._cancel_head_timer()
            self.send_400_response("Invalid HTTP request received.")
            if self._limits.on_refused is not None:  # instead of uvicorn's WARNING line per bad request
                self._limits.on_refused("bad_request")
            return False
        except httptools.HttpParserUpgrade:
            self._cancel_head_timer()
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return not self.transport.is_closing()

    def _unsupported_upgrade_warning(self) -> None:
        """An ``Upgrade`` other than websocket: served as plain HTTP; uvicorn's WARNING per request is a DEBUG line."""
        self.logger.debug("Unsupported upgrade request.")

    # -- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_header_count:
            self._refusal = "header_count"
            raise _HeadRefused(self._refusal)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        timeout = self._limits.body_timeout
        if timeout is not None:  # cancelled by on_message_complete, at once for a request without a body
            self._in_body = True
            self._head_timer = self.loop.call_later(timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_head_timer()
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0  # the timer starts with the next request's first byte (on_message_begin)

    # -- refusals -------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        timeout = self._limits.head_timeout
        if timeout is not None and self._head_timer is None:
            self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse("header_timeout")

    def _body_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:  # too late for a 408
            self.transport.close()
            if self._limits.on_refused is not None:
                self._limits.on_refused("body_timeout")
        else:
            self._refuse("body_timeout")

    def _refuse(self, reason: str) -> None:
        self._cancel_head_timer()
        status, phrase = _REFUSALS[reason]
        self._discarding = True
        self.transport.write(_CLOSE_RESPONSE % (status, phrase, len(phrase), phrase))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
        if self._limits.on_refused is not None:
            self._limits.on_refused(reason)


def make_http_protocol_class(limits: HeadLimits) -> type[HttpToolsProtocol]:
    """The class to pass as ``uvicorn.Config(http=...)``: httptools with ``limits`` on every request head."""
    return type("SenteHttpProtocol", (_LimitedHttpToolsProtocol,), {"_limits": limits})
