"""The channel-socket server: Sente's ``make-channel-socket-server!`` for asyncio.

:class:`ChannelSocketServer` owns the sans-I/O :class:`~sente.protocol.server.ServerCore`, feeds it what
the transports report, runs its timers on the event loop, and carries out its actions. It is:

* an ASGI application for Sente's path (Ajax GET/POST; WebSockets over ASGI when mounted elsewhere),
  delegating every other path to an optional inner ASGI app (:mod:`sente.server_asgi`);
* the :class:`~sente.transport.connection.WsHandler` for the picows bridge in uvicorn's ``ws`` slot;
* the API: ``send``, ``broadcast``, ``connected_uids``, and on the receive side (:mod:`sente.server_inbox`)
  ``events()``, ``on(...)``, ``start_router()``.

This module drives the core (its actions carried out, its timer armed) and serves the picows bridge.

Inside a host framework: ``chsk.mount(app)`` (Starlette/FastAPI: Sente at exactly :attr:`path`),
``app.mount("/", chsk.asgi())`` or ``app.mount("/prefix", chsk.asgi())`` (Sente at ``/prefix/chsk``) all work;
the router and the backplane start with the ASGI lifespan, with ``FastAPI(lifespan=chsk.lifespan)``, or else
with the first request (logged once). ``send``, ``broadcast`` and ``connected_uids`` may be called from any
thread (a sync route's threadpool, a job worker): they hand off to the server's event loop.

Dict keys: by default (``str_keys=True``) Python code uses ``str`` keys and the wire has keywords, both
ways: ``{"msg": "hi"}`` reaches a ClojureScript client as ``{:msg "hi"}`` and comes back as
``{"msg": "hi"}`` (rules in :mod:`sente.keys`). With ``str_keys=False`` the data is exactly Sente's:
keyword keys are :class:`~sente.edn.Keyword` and ``str`` keys are strings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import multiprocessing
import os
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from csente.fanout import write_frame

from . import metrics
from .keys import StrKeysPacker
from .loop_timer import LoopTimer
from .packers import Packer, get_packer
from .protocol.backplane import Backplane, LocalBackplane, Transport, join_remote
from .protocol.config import Response, ServerConfig
from .protocol.events import TIMEOUT
from .protocol.requests import Request
from .protocol.server import Action, Close, Dispatch, Respond, Send, ServerCore, ajax_response
from .server_asgi import AsgiApp, AsgiFace
from .server_inbox import Handler, Inbox, Source, _client_log, log
from .sessions import HostSessions, Sessions, SessionStore, SignedCookieSessions, default_store
from .transport.asgi import AsgiWebSocket
from .transport.frames import build_binary_frame, build_text_frame
from .transport.websocket import HttpResponse, UpgradeRequest, WsConnection

__all__ = ["AsgiApp", "ChannelSocketServer", "ClusterLink", "ConnectedUids", "Handler", "Source"]

CLOSED_BY_SERVER = Response(503, "Connection closed by the server", (("Content-Type", "text/plain; charset=utf-8"),))
THREAD_CALL_TIMEOUT_S = 10.0
"""How long ``send``/``connected_uids`` called from another thread wait for the server's loop to run them."""


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


class ChannelSocketServer(AsgiFace, Inbox):
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
        sessions: Sessions | HostSessions | None = None,
        recv_buffer: int = 1000,
        config: ServerConfig | None = None,
        backplane: Backplane | None = None,
        redis_url: str | None = None,
        **options: Any,
    ) -> None:
        self.path = path
        self.packer = StrKeysPacker(get_packer(packer)) if str_keys else get_packer(packer)
        self.config = config if config is not None else ServerConfig(**options)
        self.host_sessions = isinstance(sessions, HostSessions)
        """Sessions are the host framework's (``scope["session"]``), not :attr:`sessions`."""
        self.sessions: Sessions = default_store() if sessions is None or isinstance(sessions, HostSessions) \
            else sessions
        if backplane is None and ChannelSocketServer.backplane_factory is not None:
            backplane = ChannelSocketServer.backplane_factory()
        if redis_url is not None:  # other nodes, through Redis (composed by the cluster layer: import sente)
            backplane = join_remote(backplane, redis_url)
        self.core = ServerCore(self.packer, self.config, backplane)
        self.core.on_output = self._schedule_pump
        self.stats = self.core.stats  # this process's counters (sente.metrics)
        metrics.track(self)
        self.slow_consumer_closes = 0
        self._init_inbox(recv_buffer)
        self._ws: dict[Any, WsConnection | AsgiWebSocket] = {}
        self._http: dict[object, asyncio.Future[Response]] = {}
        self._timer = LoopTimer(asyncio.get_running_loop, self._on_timer)
        self._asgi_sockets = 0  # WebSockets over ASGI: while there are any, the C fan-out loop is not used
        self._pump_scheduled = False
        self._uid_listeners: list[Callable[[ConnectedUids], None]] = []
        self._last_uids = ConnectedUids(frozenset(), frozenset(), frozenset())
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop serving it: where other threads hand off
        self._started = False
        self._owns_router = False
        from .logs import redact_csrf_tokens  # uvicorn's and hypercorn's access logs print request URLs

        redact_csrf_tokens()

    # ------------------------------------------------------------------ API

    def send(self, uid: Any, event: Any, *, flush: bool = False) -> bool:
        """Push ``event`` to every connection of ``uid``; True when the uid has a connection to take it.

        From another thread it waits for the server's loop to run it (a loop pass) and returns its answer.
        """
        loop = self._own_loop()
        if loop is None:
            return bool(self._from_thread(self.send, uid, event, flush=flush))
        result = self.core.send(uid, event, loop.time() * 1000.0, flush=flush)
        self.stats.events_pushed += result
        self._after_push()
        return result

    def broadcast(self, event: Any, uids: Iterable[Any] | None = None) -> None:
        """Push ``event`` (encoded once) to ``uids``, by default to every connected uid.

        From another thread it is queued to the server's loop and returns at once (in order with that thread's
        other calls).
        """
        loop = self._own_loop()
        if loop is None:
            self._loop_for_threads().call_soon_threadsafe(self.broadcast, event, uids)
            return
        self.core.broadcast(event, loop.time() * 1000.0, uids=uids)
        self.stats.events_pushed += 1
        self._after_push()

    @property
    def connected_uids(self) -> ConnectedUids:
        """The uids with a connection, by transport (from another thread: read on the server's loop)."""
        if not self._on_loop():
            uids: ConnectedUids = self._from_thread(lambda: self.connected_uids)
            return uids
        return ConnectedUids(self.core.ws_uids, self.core.ajax_uids, self.core.any_uids)

    def _on_loop(self) -> bool:
        """Whether this call runs on the server's event loop (the first loop that uses the server becomes it)."""
        return self._own_loop() is not None

    def _own_loop(self) -> asyncio.AbstractEventLoop | None:
        """The server's event loop when this call runs on it, else None."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._loop is None or self._loop.is_closed():
            self._loop = running
        return running if running is self._loop else None

    def _after_push(self) -> None:
        """A push queues actions only when it flushes or closes; otherwise it at most armed a flush timer (a loop
        of sends to many uids skips a pump per uid)."""
        if self.core.has_actions():
            self._pump()
        else:
            self._arm_timer()

    def _loop_for_threads(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the Sente server has no event loop yet: it gets one with the ASGI lifespan or its "
                               "first request (call send/broadcast from another thread only once it serves)")
        return loop

    def _from_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the server's loop and wait for its result (for callers on other threads)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:
                future.set_exception(e)

        self._loop_for_threads().call_soon_threadsafe(run)
        return future.result(THREAD_CALL_TIMEOUT_S)

    # ------------------------------------------------------------------ starting and stopping

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran (and :meth:`stop` has not)."""
        return self._started

    def start(self) -> None:
        """Start the router for the ``@on`` handlers (unless one runs) and the link to other workers and nodes.

        Idempotent; on the event loop. The ASGI lifespan, :meth:`lifespan` or the first request calls it.
        """
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._owns_router = self._router is None and bool(self._handlers)
        if self._owns_router:
            self.start_router()
        self._check_deployment()
        link = self._link()
        if link is not None:
            link.start(self._on_remote_batch, self._on_uid_left)

    async def stop(self) -> None:
        """Undo :meth:`start`: withdraw from the other nodes, stop the link and the router it started."""
        if not self._started:
            return
        self._started = False
        link = self._link()
        if link is not None:
            aclose = getattr(link, "aclose", None)  # a Redis link withdraws its presence
            if aclose is not None:
                await aclose()
            link.stop()
        if self._owns_router:
            self._owns_router = False
            self.stop_router()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Start and stop with the host app: ``FastAPI(lifespan=chsk.lifespan)``, or ``async with
        chsk.lifespan():`` inside an app's own lifespan."""
        self.start()
        try:
            yield
        finally:
            await self.stop()

    def _start_on_first_use(self) -> None:
        log.info("Sente at %s: no ASGI lifespan reached it (mounted inside another app?), so its router and "
                 "backplane start with this first request; pass chsk.lifespan to the framework "
                 "(FastAPI(lifespan=chsk.lifespan)) to start them with the app", self.path)
        self.start()

    def _link(self) -> ClusterLink | None:
        return self.core.backplane if isinstance(self.core.backplane, ClusterLink) else None

    def _check_deployment(self) -> None:
        """Say loudly, at startup, what would otherwise fail silently with several processes."""
        backplane = self.core.backplane
        redis_link = getattr(backplane, "link", None)
        memory = isinstance(self.sessions, SessionStore) and not self.host_sessions
        if redis_link is not None and isinstance(self.sessions, SignedCookieSessions) and not self.host_sessions:
            # nodes compare it in Redis (sente.cluster.redis logs a mismatch): sessions must verify everywhere
            redis_link.secret_fingerprint = hashlib.sha256(b"sente-session|" + self.sessions._key).hexdigest()[:16]
        elif redis_link is not None and memory:
            log.error("Sente at %s joins other nodes through Redis but keeps sessions in this process's memory: "
                      "other nodes refuse its clients' sessions (403 Bad CSRF token). Give every node the same "
                      "SENTE_SESSION_SECRET", self.path)
        several = multiprocessing.parent_process() is not None or "gunicorn" in os.environ.get("SERVER_SOFTWARE", "")
        if several and (type(backplane) is LocalBackplane or memory):
            log.error("Sente at %s runs in a process started by another (uvicorn --workers, gunicorn, --reload?) "
                      "with %s: with several workers, clients get 403 Bad CSRF token and pushes between workers "
                      "are lost. Run `sente serve --workers N APP`, or give every worker the same "
                      "SENTE_SESSION_SECRET and ChannelSocketServer(redis_url=...) (README: several processes "
                      "without sente serve)", self.path,
                      "its sessions in memory" if memory else "no backplane")

    def ops_asgi(self) -> AsgiApp:
        """``/metrics``, ``/healthz`` and ``/readyz`` of this process, mountable in any ASGI app (:mod:`sente.ops`)."""
        from .ops import ops_app

        return ops_app(self)

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
                _client_log.warning("action", "skipped a %s that could not be carried out: %r",
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
            for conn in write_frame(action.handles, frame, cap) or ():
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
        _client_log.warning("slow_consumer", "closing a slow consumer (client-id %r): %d bytes unsent",
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

    def _with_session(self, request: Request) -> Request:
        session = request.host_session if self.host_sessions else self.sessions.load(request.cookies)
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
        if not self._started:
            self._start_on_first_use()
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
        self._source = conn
        try:
            self.core.ws_message(conn, data, self._now())
            self._pump()
        finally:
            self._source = None

    def ws_closed(self, conn: WsConnection, code: int | None) -> None:
        self._ws.pop(conn, None)
        self._paused.discard(conn)
        if conn.failed is not None:
            self.stats.count_rejection("protocol")
            _client_log.warning("ws_protocol", "failed a WebSocket (client-id %r): %s",
                                conn.request.param("client-id"), conn.failed)
        self.core.ws_close(conn, self._now())
        self._pump()

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
        timeout = ajax_response(self.core.packer.pack_envelope(TIMEOUT, None))
        for handle, future in list(self._http.items()):
            del self._http[handle]
            if not future.done():
                future.set_result(timeout)
            self.core.ajax_gone(handle, now)
        for conn in list(self._ws.values()):
            conn.close(close_code)
        self._pump()
