"""The channel-socket server: Sente's ``make-channel-socket-server!`` for asyncio.

:class:`ChannelSocketServer` owns the sans-I/O :class:`~sente.protocol.server.ServerCore`, feeds it what
the transports report, runs its timers on the event loop, and carries out its actions. It is:

* an ASGI application for Sente's path (Ajax GET/POST; WebSockets over ASGI when mounted elsewhere),
  delegating every other path to an optional inner ASGI app;
* the :class:`~sente.transport.websocket.WsHandler` for the picows bridge in uvicorn's ``ws`` slot;
* the API: ``send``, ``broadcast``, ``connected_uids``, ``events()``, ``on(...)``, ``start_router()``.

Dict keys: by default (``str_keys=True``) Python code uses ``str`` keys and the wire has keywords, both
ways: ``{"msg": "hi"}`` reaches a ClojureScript client as ``{:msg "hi"}`` and comes back as
``{"msg": "hi"}`` (rules in :mod:`sente.keys`). With ``str_keys=False`` the data is exactly Sente's:
keyword keys are :class:`~sente.edn.Keyword` and ``str`` keys are strings.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from csente.fanout import write_frame
from csente.types import Keyword

from . import metrics, ratelog
from .handlers import Handlers
from .keys import StrKeysPacker
from .loop_timer import LoopTimer
from .packers import Packer, get_packer
from .protocol.backplane import Backplane, Transport, join_remote
from .protocol.config import Response, ServerConfig
from .protocol.events import TIMEOUT
from .protocol.requests import Request
from .protocol.server import AJAX_CONTENT_TYPE, Action, Close, Dispatch, EventMsg, Respond, Send, ServerCore
from .sessions import Sessions, default_store
from .transport.asgi import (
    TOO_LARGE,
    AsgiWebSocket,
    Receive,
    Scope,
    read_body,
    request_from_scope,
    send_response,
    wait_for_disconnect,
)
from .transport.asgi import Send as AsgiSend
from .transport.frames import build_binary_frame, build_text_frame
from .transport.websocket import HttpResponse, UpgradeRequest, WsConnection

log = logging.getLogger("sente.server")

Handler = Callable[[EventMsg], Awaitable[None] | None]
AsgiApp = Callable[[Scope, Receive, AsgiSend], Awaitable[None]]
CLOSED_BY_SERVER = Response(503, "Connection closed by the server", (("Content-Type", "text/plain; charset=utf-8"),))


@runtime_checkable
class ClusterLink(Protocol):
    """A backplane with an inbox to read on the event loop (the shared-memory one, Redis later)."""

    def start(
        self, on_batch: Callable[[Transport, Any, str | bytes], None], on_uid_left: Callable[[Any], None]
    ) -> None:
        ...

    def stop(self) -> None:
        ...


class ConnectedUids(NamedTuple):
    """The uids with a live (or reconnecting) connection, by transport; Sente's ``connected-uids``."""

    ws: frozenset[Any]
    ajax: frozenset[Any]
    any: frozenset[Any]


class ChannelSocketServer:
    """One Sente endpoint. Options are :class:`~sente.protocol.config.ServerConfig`'s, by name.

    ``backplane`` connects it to the rest of a broker or cluster (default: this process alone, or what
    :attr:`backplane_factory` makes: a broker worker sets that before it builds the app, so an app needs
    no change to run under ``--workers``). ``redis_url`` joins it to other nodes through Redis
    (:func:`sente.cluster.composite.with_redis`, installed by ``import sente``; ``sente serve --redis-url`` does it
    for every worker).
    """

    backplane_factory: ClassVar[Callable[[], Backplane] | None] = None

    def __init__(
        self,
        *,
        path: str = "/chsk",
        packer: str | Packer = "edn",
        str_keys: bool = True,
        sessions: Sessions | None = None,
        recv_buffer: int = 1000,
        config: ServerConfig | None = None,
        backplane: Backplane | None = None,
        redis_url: str | None = None,
        **options: Any,
    ) -> None:
        self.path = path
        self.packer = StrKeysPacker(get_packer(packer)) if str_keys else get_packer(packer)
        self.config = config if config is not None else ServerConfig(**options)
        self.sessions = sessions if sessions is not None else default_store()
        if backplane is None and ChannelSocketServer.backplane_factory is not None:
            backplane = ChannelSocketServer.backplane_factory()
        if redis_url is not None:  # other nodes, through Redis (composed by the cluster layer: import sente)
            backplane = join_remote(backplane, redis_url)
        self.core = ServerCore(self.packer, self.config, backplane)
        self.core.on_output = self._schedule_pump
        self.stats = self.core.stats  # this process's counters (sente.metrics)
        metrics.track(self)
        self.slow_consumer_closes = 0
        self.dropped_events = 0
        self._recv: asyncio.Queue[EventMsg] | None = None
        self._recv_size = recv_buffer
        self._handlers: Handlers[Handler] = Handlers()
        self._ws: dict[Any, WsConnection | AsgiWebSocket] = {}
        self._http: dict[object, asyncio.Future[Response]] = {}
        self._router: asyncio.Task[None] | None = None
        self._timer = LoopTimer(asyncio.get_running_loop, self._on_timer)
        self._asgi_sockets = 0  # WebSockets over ASGI: while there are any, the C fan-out loop is not used
        self._pump_scheduled = False
        self._uid_listeners: list[Callable[[ConnectedUids], None]] = []
        self._last_uids = ConnectedUids(frozenset(), frozenset(), frozenset())

    # ------------------------------------------------------------------ API

    def send(self, uid: Any, event: Any, *, flush: bool = False) -> bool:
        """Push ``event`` to every connection of ``uid``; True when the uid has a connection to take it."""
        result = self.core.send(uid, event, self._now(), flush=flush)
        self.stats.events_pushed += result
        self._pump()
        return result

    def broadcast(self, event: Any, uids: Iterable[Any] | None = None) -> None:
        """Push ``event`` (encoded once) to ``uids``, by default to every connected uid."""
        self.core.broadcast(event, self._now(), uids=uids)
        self.stats.events_pushed += 1
        self._pump()

    @property
    def connected_uids(self) -> ConnectedUids:
        return ConnectedUids(self.core.ws_uids, self.core.ajax_uids, self.core.any_uids)

    def connection_counts(self) -> tuple[int, int]:
        """(open WebSockets, registered Ajax clients) of this server, for ``sente_connections``."""
        return len(self._ws), sum(len(clients) for clients in self.core._uid_clients["ajax"].values())

    @property
    def local_uid_count(self) -> int:
        """Uids with a connection to this server (this process only)."""
        return len(self.core._uid_clients["ws"].keys() | self.core._uid_clients["ajax"].keys())

    def on_connected_uids_change(self, callback: Callable[[ConnectedUids], None]) -> None:
        """Call ``callback`` with the new sets whenever any of them changes."""
        self._uid_listeners.append(callback)

    def on(self, event: str | Keyword) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of one event id (``"ns/name"`` or a Keyword)."""
        return self._handlers.on(event)

    def on_default(self, handler: Handler) -> Handler:
        """Decorator registering the handler for events with no handler of their own."""
        return self._handlers.on_default(handler)

    async def events(self) -> AsyncIterator[EventMsg]:
        """Event messages as they arrive (an async iterator); the router reads the same stream."""
        queue = self._queue()
        while True:
            yield await queue.get()

    def start_router(self, handler: Handler | None = None) -> Callable[[], None]:
        """Route every event message to ``handler`` (default: the registered handlers); returns a stop function.

        One router at a time reads the stream: calling this while one runs returns the running router's stop
        function when no new ``handler`` is given, and raises RuntimeError otherwise.
        """
        if self._router is not None and not self._router.done():
            if handler is not None:
                raise RuntimeError("a router is already running; stop it before starting another")
            return self.stop_router
        route = handler if handler is not None else self._route
        queue = self._queue()

        async def run() -> None:
            while True:
                msg = await queue.get()
                try:
                    result = route(msg)
                    if inspect.isawaitable(result):
                        await result
                except Exception as e:
                    self.stats.handler_errors += 1
                    ratelog.warn(log, "handler", "the handler of %r (uid %r) raised %r", msg.id, msg.uid, e,
                                 exc_info=e)

        self._router = asyncio.get_running_loop().create_task(run(), name="sente-router")
        return self.stop_router

    def stop_router(self) -> None:
        """Stop the running router, if any; unread event messages stay in the stream."""
        if self._router is not None:
            self._router.cancel()
            self._router = None

    def _route(self, msg: EventMsg) -> Awaitable[None] | None:
        handler = self._handlers.get(msg.id)
        if handler is None:
            log.debug("unhandled event %r from uid %r", msg.id, msg.uid)
            return None
        return handler(msg)

    def _queue(self) -> asyncio.Queue[EventMsg]:
        if self._recv is None:
            self._recv = asyncio.Queue(self._recv_size)
        return self._recv

    # ------------------------------------------------------------------ driving the core

    def _now(self) -> float:
        return asyncio.get_running_loop().time() * 1000.0

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        for action in self.core.take_actions():
            try:
                self._execute(action)
            except Exception as e:  # one failed write (a custom packer's output, a broken socket) is its own
                self.stats.send_errors += 1
                ratelog.warn(log, "action", "skipped a %s that could not be carried out: %r",
                             type(action).__name__, e, exc_info=e)
        self._arm_timer()
        uids = self.connected_uids if self._uid_listeners else None
        if uids is not None and uids != self._last_uids:
            self._last_uids = uids
            for listener in self._uid_listeners:
                listener(uids)

    def _arm_timer(self) -> None:
        self._timer.arm(self.core.next_deadline())

    def _on_timer(self) -> None:
        try:
            self.core.tick(self._now())
        finally:  # the actions queued so far go out, and the timer is armed again, whatever a timer raised
            self._pump()

    def _execute(self, action: Action) -> None:
        if isinstance(action, Send):
            self._write(action)
        elif isinstance(action, Dispatch):
            self._enqueue(action.msg)
        elif isinstance(action, Respond):
            future = self._http.pop(action.handle, None)
            if future is not None and not future.done():
                future.set_result(action.response)
                self.stats.bytes_sent += len(action.response.body)
        elif isinstance(action, Close):
            self._close(action)

    def _write(self, action: Send) -> None:
        data = action.data
        self.stats.bytes_sent += len(data) * len(action.handles)
        if len(action.handles) == 1 and not action.push:
            conn = self._ws.get(action.handles[0])
            if conn is not None:
                conn.send_text(data) if isinstance(data, str) else conn.send_bytes(data)
            return
        frame = build_text_frame(data) if isinstance(data, str) else build_binary_frame(data)
        cap = self.config.max_outbound_bytes
        if not self._asgi_sockets:
            # Every handle is a picows bridge connection (the handle is the connection): one C loop writes
            # the frame to all of them; closed ones are skipped by their flags.
            for conn in write_frame(list(action.handles), frame, cap) or ():
                self._close_slow(conn)
            return
        for handle in action.handles:
            conn = self._ws.get(handle)
            if conn is None:
                continue
            if isinstance(conn, AsgiWebSocket):
                conn.send_text(data) if isinstance(data, str) else conn.send_bytes(data)
            else:
                conn.send_frame(frame)
            if conn.buffered_bytes > cap:
                self._close_slow(conn)

    def _close_slow(self, conn: WsConnection | AsgiWebSocket) -> None:
        self.slow_consumer_closes += 1
        self.stats.slow_consumer_closes += 1
        log.warning("closing a slow consumer (client-id %r): %d bytes unsent",
                    conn.request.param("client-id"), conn.buffered_bytes)
        conn.close(self.config.slow_consumer_close_code, "slow consumer")

    def _close(self, action: Close) -> None:
        conn = self._ws.get(action.handle)
        if conn is not None:
            conn.close(action.code)
            return
        future = self._http.pop(action.handle, None)
        if future is not None and not future.done():
            future.set_result(CLOSED_BY_SERVER)
            self.core.ajax_gone(action.handle, self._now())

    def _on_remote_batch(self, transport: Transport, uid: Any, data: str | bytes) -> None:
        self.core.deliver_remote(transport, uid, data, self._now())
        self._pump()

    def _on_uid_left(self, uid: Any) -> None:
        self.core.uid_left_elsewhere(uid)
        self._pump()

    def _enqueue(self, msg: EventMsg) -> None:
        queue = self._queue()
        if queue.full():
            queue.get_nowait()  # a sliding buffer, as Sente's: the oldest message goes
            self.dropped_events += 1
            self.stats.dropped_events += 1
            log.warning("receive buffer full (%d): dropped the oldest event message", self._recv_size)
        if msg.reply is not None:
            msg.reply = self._timed_reply(msg.reply)
        queue.put_nowait(msg)

    def _timed_reply(self, reply: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """``reply`` observing ``sente_reply_latency_seconds``: from the event's arrival to the reply going out."""
        loop = asyncio.get_running_loop()
        received = loop.time()
        latency = self.stats.reply_latency

        def timed(value: Any) -> bool:
            sent = reply(value)
            if sent:
                latency.observe(loop.time() - received)
            return sent

        return timed

    def _with_session(self, request: Request) -> Request:
        session = self.sessions.load(request.cookies)
        if session is not None:
            request.session = session
        return request

    # ------------------------------------------------------------------ picows bridge (WsHandler)

    def _upgrade_request(self, upgrade: UpgradeRequest) -> Request:
        return self._with_session(Request(
            method=upgrade.method,
            path=upgrade.path,
            query=upgrade.query,
            headers=upgrade.headers,
            cookies=upgrade.cookies,
            client=upgrade.client,
        ))

    def ws_accept(self, request: UpgradeRequest) -> HttpResponse | None:
        if request.path != self.path:
            return HttpResponse(404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found")
        refused = self.core.ws_accept(self._upgrade_request(request))
        if refused is None:
            return None
        self.stats.rejected(self.config, "ws", refused)
        body = refused.body.encode() if isinstance(refused.body, str) else refused.body
        return HttpResponse(refused.status, list(refused.headers), body)

    def ws_opened(self, conn: WsConnection) -> None:
        self._ws[conn] = conn
        self.stats.handshakes_ws += 1
        self.core.ws_open(conn, self._upgrade_request(conn.request), self._now())
        self._pump()

    def ws_message(self, conn: WsConnection, data: str | bytes) -> None:
        self.stats.events_received += 1
        self.stats.bytes_received += len(data)
        self.core.ws_message(conn, data, self._now())
        self._pump()

    def ws_closed(self, conn: WsConnection, code: int | None) -> None:
        self._ws.pop(conn, None)
        self.core.ws_close(conn, self._now())
        self._pump()

    # ------------------------------------------------------------------ ASGI

    def asgi(self, inner: AsgiApp | None = None, *, csrf_token_path: str | None = None) -> AsgiApp:
        """An ASGI app serving Sente's path and passing every other request to ``inner`` (else 404).

        At lifespan startup it starts the router for handlers registered with :meth:`on` / :meth:`on_default`
        (unless one runs already), then hands the lifespan to ``inner``. With ``csrf_token_path``, a GET there
        answers the session's CSRF token as text and sets the session cookie when the session is new: how a
        page (or a Python client) gets the token it must present.
        """

        async def app(scope: Scope, receive: Receive, send: AsgiSend) -> None:
            kind = scope["type"]
            if kind == "http" and csrf_token_path is not None and scope["path"] == csrf_token_path:
                await self._send_csrf_token(scope, send)
            elif kind in ("http", "websocket") and scope["path"] == self.path:
                if kind == "http":
                    await self._ajax(scope, receive, send)
                else:
                    await self._asgi_ws(scope, receive, send)
            elif kind == "lifespan":
                owns_router = self._router is None and bool(self._handlers)
                if owns_router:
                    self.start_router()
                link = self.core.backplane if isinstance(self.core.backplane, ClusterLink) else None
                if link is not None:
                    link.start(self._on_remote_batch, self._on_uid_left)
                try:
                    if inner is not None:
                        await inner(scope, receive, send)
                    else:
                        while (await receive())["type"] != "lifespan.shutdown":
                            await send({"type": "lifespan.startup.complete"})
                        await send({"type": "lifespan.shutdown.complete"})
                finally:
                    if link is not None:
                        aclose = getattr(link, "aclose", None)  # a Redis link withdraws its presence
                        if aclose is not None:
                            await aclose()
                        link.stop()
                    if owns_router:
                        self.stop_router()
            elif inner is not None:
                await inner(scope, receive, send)
            elif kind == "http":
                await send_response(send, Response(404, "Not Found"))

        return app

    async def _send_csrf_token(self, scope: Scope, send: AsgiSend) -> None:
        session, new = self.sessions.get_or_create(request_from_scope(scope).cookies)
        new = new or "csrf-token" not in session
        token = self.sessions.csrf_token(session)
        set_cookie = self.sessions.save(session) if new else None
        headers = [("Cache-Control", "no-store")] + ([("Set-Cookie", set_cookie)] if set_cookie else [])
        await send_response(send, Response(200, token, (("Content-Type", "text/plain; charset=utf-8"),)), headers)

    async def __call__(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        await self.asgi()(scope, receive, send)

    async def _ajax(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        method = scope["method"]
        if method not in ("GET", "POST"):
            await send_response(send, Response(405, "Method Not Allowed"), [("Allow", "GET, POST")])
            return
        body = b""
        if method == "POST":
            read = await read_body(receive, self.config.max_body_bytes)
            if read is None:
                self.stats.count_rejection("size")
                await send_response(send, TOO_LARGE, [("Connection", "close")])
                return
            body = read
            self.stats.events_received += 1
            self.stats.bytes_received += len(body)
        request = self._with_session(request_from_scope(scope, body))
        handle = object()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._http[handle] = future
        if method == "GET":
            self.core.ajax_get(handle, request, self._now())
        else:
            self.core.ajax_post(handle, request, self._now())
        self._pump()
        if not future.done():
            gone = asyncio.ensure_future(wait_for_disconnect(receive))
            await asyncio.wait((future, gone), return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not future.done():
                self._http.pop(handle, None)
                self.core.ajax_gone(handle, self._now())
                self._pump()
                return
        await send_response(send, future.result())

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

    # ------------------------------------------------------------------ shutdown

    async def settle(self, timeout: float = 1.0) -> None:
        """The first half of a drain when other processes share the work (a broker): flush the send buffers to
        them, then deliver what they flush to this process until each has done the same (at most ``timeout``
        seconds). :meth:`drain` then closes; without a backplane that knows how, only the flush happens."""
        self.core.flush(self._now())
        self._pump()
        settle = getattr(self.core.backplane, "settle", None)
        if settle is not None:
            await settle(timeout)

    def drain(self, close_code: int = 1012) -> None:
        """Prepare for a process exit (a worker draining on SIGTERM): flush the send buffers, answer every
        held Ajax long-poll and pending Ajax POST with ``[:chsk/timeout nil]`` (the client polls again,
        elsewhere) and close every WebSocket with ``close_code`` (1012, service restart: Sente clients
        reconnect). New connections are the caller's to refuse (close the listening socket first)."""
        now = self._now()
        self.core.flush(now)
        self._pump()  # polls with data waiting are answered with it
        timeout = Response(200, self.core.packer.pack_envelope(TIMEOUT, None), AJAX_CONTENT_TYPE)
        for handle, future in list(self._http.items()):
            del self._http[handle]
            if not future.done():
                future.set_result(timeout)
            self.core.ajax_gone(handle, now)
        for conn in list(self._ws.values()):
            conn.close(close_code)
        self._pump()


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
