"""The client's transports: the WebSocket connect and the Ajax poll and post exchanges, each traced as a
:class:`~sente.client.messages.WireRecord` and reported back to the sans-I/O core.

:class:`Transports` is the I/O half of :class:`~sente.client.api.Client`: the client builds the state it reads
(URL parts, query params, headers, packer, TLS context, HTTP pool) and runs its ``_pump`` after each report.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import aiohttp

from ..packers import Packer
from ..protocol.client import ClientConfig, ClientCore, Poll, Post
from .ajax import AjaxHttp, HttpResult, encode_pairs
from .errors import ConnectionRejected, describe_error
from .messages import WireRecord
from .ws import UpgradeRefused, WsLink

wire_log = logging.getLogger("sente.client.wire")

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded;charset=UTF-8"
TokenSource = str | Callable[[], str | None] | None


class Transports(ABC):
    """Carries out the core's I/O actions (set up by :class:`~sente.client.api.Client`'s ``__init__``)."""

    core: ClientCore
    config: ClientConfig
    packer: Packer
    http_base: str
    ws_base: str
    path: str
    params: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    client_id: str
    csrf_token: TokenSource
    open_timeout: float | None
    _loop: asyncio.AbstractEventLoop | None
    _t0: float
    _trace_fn: Callable[[WireRecord], None] | None
    _trace_info: bool
    _ws: WsLink | None
    _ssl_context: _ssl.SSLContext | None
    _http: AjaxHttp
    _rejection: ConnectionRejected | None

    @abstractmethod
    def _pump(self) -> None:
        """Carry out what the core asks for next (after each report)."""

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _now(self) -> float:
        return self._running_loop().time() * 1000.0

    # ------------------------------------------------------------------ helpers

    def _token(self) -> str | None:
        token = self.csrf_token() if callable(self.csrf_token) else self.csrf_token
        return None if token is None else str(token)

    def _trace(self, dir: str, transport: str, kind: str, **fields: Any) -> None:
        if self._trace_fn is None and not self._trace_info and not wire_log.isEnabledFor(logging.DEBUG):
            return
        record = WireRecord(dir, transport, kind, rel_ms=(time.monotonic() - self._t0) * 1000.0, **fields)
        if self._trace_fn is not None:
            self._trace_fn(record)
        wire_log.log(logging.INFO if self._trace_info else logging.DEBUG, "%s", record.line())

    def _reject(self, transport: str, status: int, body: bytes) -> None:
        if not self.core.state.ever_opened and self._rejection is None:
            self._rejection = ConnectionRejected(transport, status, body)

    # ------------------------------------------------------------------ WebSocket

    async def _ws_connect(self, conn: int) -> None:
        query = [*self.params, ("client-id", self.client_id)]
        token = self._token()
        if token is not None:
            query.append(("csrf-token", token))
        url = f"{self.ws_base}{self.path}?{encode_pairs(query)}"
        self._trace("c2s", "ws", "ws_upgrade_request", method="GET", path=self.path, query=tuple(query),
                    headers=tuple(self.headers))

        def on_message(data: str | bytes) -> None:
            self._trace("s2c", "ws", "ws_frame", raw=data)
            self.core.ws_message(conn, data, self._now())
            self._pump()

        def on_closed(code: int, reason: str, clean: bool) -> None:
            self._trace("s2c", "ws", "ws_close", close_code=code, raw=reason)
            if self._ws is link:
                self._ws = None
            self.core.ws_closed(conn, self._now(), code, reason, clean)
            self._pump()

        link = WsLink(on_message, on_closed)
        self._ws = link
        try:
            await link.open(url, self.headers, timeout=max(1.0, self.open_timeout or 10.0),
                            ssl_context=self._ssl_context)
        except asyncio.CancelledError:
            if self._ws is link:
                self._ws = None
            return
        except Exception as e:
            if self._ws is link:
                self._ws = None
            if isinstance(e, UpgradeRefused):
                self._trace("s2c", "ws", "http_response", status=e.status, raw=e.body.decode("utf-8", "replace"))
                if self.config.type == "ws":
                    self._reject("ws", e.status, e.body)
            else:
                self._trace("s2c", "ws", "ws_error", raw=describe_error(e))
            now = self._now()
            self.core.ws_error(conn, describe_error(e), now)
            self.core.ws_closed(conn, now, 1006, "", False)
            self._pump()
            return
        if conn != self.core.conn:  # disconnected or superseded while connecting
            link.close(1000, "CLOSE_NORMAL")

    # ------------------------------------------------------------------ Ajax

    def _ajax_headers(self, *, post: bool) -> list[tuple[str, str]]:
        headers = [("X-Requested-With", "XMLHTTPRequest")]
        token = self._token()
        if token is not None:
            headers.append(("X-CSRF-Token", token))
        if post:
            ctype = "application/octet-stream" if self.packer.binary else FORM_CONTENT_TYPE
            headers.append(("Content-Type", ctype))
        return headers + self.headers

    def _udt(self) -> str:
        return str(int(time.time() * 1000))

    async def _exchange(
        self, method: str, query: list[tuple[str, str]], headers: list[tuple[str, str]], body: bytes | None,
        timeout_s: float, form: tuple[tuple[str, str], ...] | None = None,
    ) -> HttpResult:
        self._trace("c2s", "ajax", "http_request", method=method, path=self.path, query=tuple(query),
                    headers=tuple(headers), form=form, raw=(body or b"").decode("utf-8", "replace"))
        try:
            result = await self._http.request(method, self.http_base + self.path, query, headers, body, timeout_s)
        except (asyncio.CancelledError, Exception) as e:
            self._trace("s2c", "ajax", "http_error", raw=describe_error(e))
            raise
        raw: str | bytes = result.body if self.packer.binary else result.body.decode("utf-8", "replace")
        self._trace("s2c", "ajax", "http_response", status=result.status, raw=raw, headers=result.headers)
        return result

    def _body(self, result: HttpResult) -> str | bytes:
        return result.body if self.packer.binary else result.body.decode("utf-8")

    async def _ajax_poll(self, poll: Poll) -> None:
        query = [*self.params, ("udt", self._udt()), ("client-id", self.client_id)]
        if poll.handshake:
            query.append(("handshake?", "1"))
        try:
            result = await self._exchange("GET", query, self._ajax_headers(post=False), None, poll.timeout_ms / 1000)
        except asyncio.CancelledError:
            self.core.ajax_poll_done(poll.conn, self._now(), error="aborted")
        except TimeoutError:
            self.core.ajax_poll_done(poll.conn, self._now(), timed_out=True)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            self.core.ajax_poll_done(poll.conn, self._now(), error=describe_error(e))
        else:
            if result.status != 200:
                self._reject("ajax", result.status, result.body)
                self.core.ajax_poll_done(poll.conn, self._now(), error=(result.status, result.body))
            else:
                try:
                    body = self._body(result)
                except UnicodeDecodeError as e:
                    self.core.ajax_poll_done(poll.conn, self._now(), error=repr(e))
                else:
                    self.core.ajax_poll_done(poll.conn, self._now(), body)
        self._pump()

    async def _ajax_post(self, post: Post) -> None:
        fields = [("udt", self._udt()), ("client-id", self.client_id)]
        if isinstance(post.data, bytes):
            query, form, body = [*fields, ("binary?", "true")], None, post.data
        else:
            form_fields = (*fields, ("ppstr", post.data))
            query, form, body = [], form_fields, encode_pairs(form_fields).encode("ascii")
        timeout_ms = post.timeout_ms if post.timeout_ms is not None else self.config.ajax_timeout_ms
        try:
            result = await self._exchange("POST", query, self._ajax_headers(post=True), body, timeout_ms / 1000, form)
        except asyncio.CancelledError:
            self.core.ajax_post_done(post.key, self._now(), error="aborted")
        except TimeoutError:
            self.core.ajax_post_done(post.key, self._now(), timed_out=True)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            self.core.ajax_post_done(post.key, self._now(), error=repr(e))
        else:
            if result.status != 200:
                self.core.ajax_post_done(post.key, self._now(), error=(result.status, result.body))
            else:
                try:
                    data = self._body(result)
                except UnicodeDecodeError as e:
                    self.core.ajax_post_done(post.key, self._now(), error=repr(e))
                else:
                    self.core.ajax_post_done(post.key, self._now(), data)
        self._pump()


def tls_context(option: _ssl.SSLContext | bool | None) -> _ssl.SSLContext:
    """The context for ``https``/``wss``: the given one; for False one that verifies nothing; else the system's."""
    if isinstance(option, _ssl.SSLContext):
        return option
    context = _ssl.create_default_context()
    if option is False:
        context.check_hostname = False
        context.verify_mode = _ssl.CERT_NONE
    return context
