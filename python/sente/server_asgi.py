"""The ASGI face of :class:`~sente.server.ChannelSocketServer`: Sente's path as an ASGI application.

Ajax GET (long-poll, handshake) and POST (event messages) on Sente's path, WebSockets over ASGI when the picows bridge
does not serve them (mounted inside another framework), the lifespan, the CSRF-token route, CORS (preflights and the
headers of an explicit ``allowed_origins``), and every other path handed to an optional inner ASGI app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .protocol.config import Response, ServerConfig
from .protocol.requests import Request
from .protocol.server import ServerCore
from .protocol.stats import Counters
from .server_inbox import Source, _client_log
from .sessions import HostSessions, Sessions
from .transport.asgi import (
    TOO_LARGE,
    AsgiWebSocket,
    Receive,
    Scope,
    read_body,
    request_from_scope,
    route_path,
    send_response,
    wait_for_disconnect,
)
from .transport.asgi import Send as AsgiSend
from .transport.websocket import WsConnection

AsgiApp = Callable[[Scope, Receive, AsgiSend], Awaitable[None]]
TOO_MANY = Response(429, "Too many events waiting", (("Content-Type", "text/plain; charset=utf-8"),))
NO_HOST_SESSION = Response(500, "HostSessions: no session in the ASGI scope (add Starlette's SessionMiddleware)",
                           (("Content-Type", "text/plain; charset=utf-8"),))


class AsgiFace:
    """Sente's path as an ASGI app (a mixin of ChannelSocketServer's: it drives the server's core)."""

    path: str
    config: ServerConfig
    core: ServerCore
    stats: Counters
    sessions: Sessions
    host_sessions: bool
    _started: bool
    _readers: int
    _queued: dict[Source, int]
    _source: Source | None
    _http: dict[object, asyncio.Future[Response]]
    _ws: dict[Any, WsConnection | AsgiWebSocket]
    _asgi_sockets: int

    if TYPE_CHECKING:  # the host's: ChannelSocketServer
        def start(self) -> None: ...
        async def stop(self) -> None: ...
        def _start_on_first_use(self) -> None: ...
        def _with_session(self, request: Request) -> Request: ...
        def _now(self) -> float: ...
        def _pump(self) -> None: ...

    def asgi(self, inner: AsgiApp | None = None, *, csrf_token_path: str | None = None) -> AsgiApp:
        """An ASGI app serving Sente's path and passing every other request to ``inner`` (else 404).

        Paths are read inside the app it is mounted in (``path`` less ``root_path``): mounted at ``/`` it serves
        :attr:`path`; at ``/prefix``, ``/prefix`` + :attr:`path`; at :attr:`path` itself, that path (Starlette's
        ``Mount`` then forwards only ``path/``: :meth:`mount` serves the exact path). The lifespan starts the
        server (:meth:`start`) and is handed on to ``inner``; without one, the first request starts it. With
        ``csrf_token_path``, a GET there answers the session's CSRF token as text and sets the session cookie
        when the session is new: how a page (or a Python client) gets the token it must present.
        """

        async def app(scope: Scope, receive: Receive, send: AsgiSend) -> None:
            kind = scope["type"]
            if kind == "lifespan":
                await self._lifespan(inner, scope, receive, send)
                return
            local = route_path(scope) if kind in ("http", "websocket") else ""
            if kind == "http" and csrf_token_path is not None and local == csrf_token_path:
                await self._send_csrf_token(scope, send)
            elif kind in ("http", "websocket") and self._is_endpoint(scope, local):
                if not self._started:
                    self._start_on_first_use()
                if kind == "http":
                    await self._ajax(scope, receive, send)
                else:
                    await self._asgi_ws(scope, receive, send)
            elif inner is not None:
                await inner(scope, receive, send)
            elif kind == "http":
                await send_response(send, Response(404, "Not Found"))
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})

        return app

    def _is_endpoint(self, scope: Scope, local: str) -> bool:
        """Sente's path inside the mounting app, or the mount point itself when mounted at Sente's path."""
        if local == self.path:
            return True
        return local in ("", "/") and str(scope.get("root_path", "")).rstrip("/").endswith(self.path)

    async def _lifespan(self, inner: AsgiApp | None, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        self.start()
        try:
            if inner is not None:
                await inner(scope, receive, send)
            else:
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
        finally:
            await self.stop()

    def mount(self, app: Any) -> None:
        """Serve Sente at exactly :attr:`path` of a Starlette or FastAPI ``app`` (WebSocket and Ajax), ahead of its
        own routes, inside its middleware (sessions, auth). ``app.mount(path, chsk.asgi())`` cannot: Starlette's
        ``Mount`` matches only paths beneath it, so it redirects ``/chsk`` (Ajax) and refuses it (WebSocket)."""
        from starlette.routing import Route, WebSocketRoute

        endpoint = _Endpoint(self.asgi())
        app.router.routes[0:0] = [Route(self.path, endpoint), WebSocketRoute(self.path, endpoint)]

    async def _send_csrf_token(self, scope: Scope, send: AsgiSend) -> None:
        cors = self._cors_headers(scope)
        if self.host_sessions:
            host = request_from_scope(scope).host_session
            if host is None:
                await send_response(send, NO_HOST_SESSION)
                return
            token, set_cookie = HostSessions.csrf_token(host), None  # the middleware saves the session
        else:
            session, new = self.sessions.get_or_create(request_from_scope(scope).cookies)
            new = new or "csrf-token" not in session
            token = self.sessions.csrf_token(session)
            set_cookie = self.sessions.save(session) if new else None
        headers = [("Cache-Control", "no-store"), *cors] + ([("Set-Cookie", set_cookie)] if set_cookie else [])
        await send_response(send, Response(200, token, (("Content-Type", "text/plain; charset=utf-8"),)), headers)

    def _cors_headers(self, scope: Scope) -> list[tuple[str, str]]:
        """CORS headers for a request from an origin in an explicit ``allowed_origins`` (credentials allowed)."""
        allowed = self.config.allowed_origins
        if allowed == "all":
            return []
        origin = next((v for k, v in scope.get("headers", ()) if k.lower() == b"origin"), None)
        if origin is None or origin.decode("latin-1") not in allowed:
            return []
        return [("Access-Control-Allow-Origin", origin.decode("latin-1")),
                ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]

    async def _preflight(self, scope: Scope, send: AsgiSend) -> None:
        """Answer a CORS preflight (``OPTIONS``) for an allowed origin; 405 for any other."""
        cors = self._cors_headers(scope)
        if not cors:
            await send_response(send, Response(405, "Method Not Allowed"), [("Allow", "GET, POST, OPTIONS")])
            return
        asked = next((v for k, v in scope.get("headers", ()) if k.lower() == b"access-control-request-headers"), None)
        cors += [
            ("Access-Control-Allow-Methods", "GET, POST"),
            ("Access-Control-Allow-Headers",
             asked.decode("latin-1") if asked else "X-CSRF-Token, X-Requested-With, Content-Type"),
            ("Access-Control-Max-Age", "600"),
        ]
        await send_response(send, Response(204, b"", (("Content-Type", "text/plain"),)), cors)

    async def __call__(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        await self.asgi()(scope, receive, send)

    async def _ajax(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await self._preflight(scope, send)
            return
        if method not in ("GET", "POST"):
            await send_response(send, Response(405, "Method Not Allowed"), [("Allow", "GET, POST, OPTIONS")])
            return
        cors = self._cors_headers(scope)
        body = b""
        source: Source | None = None
        if method == "POST":
            source = ("ajax", _client_id(scope))
            if self._readers and self._queued.get(source, 0) >= self.config.max_queued_events_per_client:
                self.stats.count_rejection("flood")
                _client_log.warning("flood", "answered 429 to an Ajax POST (client-id %r): %d events waiting",
                                    source[1], self._queued[source])
                await send_response(send, TOO_MANY)
                return
            read = await read_body(receive, self.config.max_body_bytes)
            if read is None:
                self.stats.count_rejection("size")
                await send_response(send, TOO_LARGE, [("Connection", "close"), *cors])
                return
            body = read
            self.stats.events_received += 1
            self.stats.bytes_received += len(body)
        request = self._with_session(request_from_scope(scope, body))
        handle = object()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._http[handle] = future
        self._source = source
        try:
            if method == "GET":
                self.core.ajax_get(handle, request, self._now())
            else:
                self.core.ajax_post(handle, request, self._now())
            self._pump()
        finally:
            self._source = None
        if not future.done():
            gone = asyncio.ensure_future(wait_for_disconnect(receive))
            await asyncio.wait((future, gone), return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not future.done():
                self._http.pop(handle, None)
                self.core.ajax_gone(handle, self._now())
                self._pump()
                return
        await send_response(send, future.result(), cors)

    async def _asgi_ws(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        request = self._with_session(request_from_scope(scope))
        refused = self.core.ws_accept(request)
        if refused is not None:
            self.stats.rejected(self.config, "ws", refused)
            await _refuse_asgi_ws(scope, send, refused)
            return
        await send({"type": "websocket.accept"})
        conn = AsgiWebSocket(send, request)
        self._ws[conn] = conn
        self._asgi_sockets += 1
        self.stats.handshakes_ws += 1
        self.core.ws_open(conn, request, self._now())
        self._pump()
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                if conn.closed:
                    continue  # closing (too big, slow consumer): what the client still sends is ignored
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                size = _size(data)
                if size > self.config.max_ws_message_bytes:
                    self.stats.count_rejection("size")
                    conn.close(1009, "message too big")
                    continue
                self.stats.events_received += 1
                self.stats.bytes_received += size
                self.core.ws_message(conn, data, self._now())
                self._pump()
        finally:
            self._ws.pop(conn, None)
            self._asgi_sockets -= 1
            self.core.ws_close(conn, self._now())
            self._pump()
            await conn.finish()

def _client_id(scope: Scope) -> str:
    """The ``client-id`` query parameter of an ASGI request ("" without one)."""
    query: bytes = scope.get("query_string", b"")
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "client-id":
            return value
    return ""


class _Endpoint:
    """An ASGI app as an object: Starlette routes call objects as ASGI apps (functions as request handlers)."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        await self.app(scope, receive, send)


def _size(data: str | bytes) -> int:
    """A message's size in bytes: text counts as its UTF-8 encoding (ASCII text is not encoded to know it)."""
    return len(data.encode("utf-8")) if isinstance(data, str) and not data.isascii() else len(data)


async def _refuse_asgi_ws(scope: Scope, send: AsgiSend, response: Response) -> None:
    """Answer a refused ASGI WebSocket with the HTTP response where the server supports it, else close 1008."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = response.body.encode() if isinstance(response.body, str) else response.body
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        await send({"type": "websocket.http.response.start", "status": response.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
