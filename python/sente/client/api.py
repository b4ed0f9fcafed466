"""The asyncio Sente client: :func:`connect` and :class:`Client`, Sente's ``make-channel-socket-client!``.

:class:`Client` owns a sans-I/O :class:`~sente.protocol.client.ClientCore`, runs its timers on the event
loop, carries out its actions over a WebSocket (:mod:`.ws`) or Ajax long-polling (:mod:`.ajax`), both driven
from :mod:`.transports`, and offers the API: ``request``/``send``, ``events()`` and per-event handlers, ``state``,
``disconnect``, ``reconnect``, ``break_connection``. Every frame and HTTP exchange can be traced (``trace=``) as a
:class:`WireRecord`, shaped like the captured transcripts, and is logged to ``sente.client.wire`` at
DEBUG level.

Dict keys: by default (``str_keys=True``) Python code sees ``str`` keys where the wire has keywords, as
on the server (:mod:`sente.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import ssl as _ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from csente.types import Keyword

from ..handlers import Handlers
from ..keys import StrKeysPacker
from ..loop_timer import LoopTimer
from ..packers import Packer, get_packer
from ..protocol.client import (
    CLOSED,
    ERROR,
    STATE,
    Action,
    ClientConfig,
    ClientCore,
    ClientState,
    ClientType,
    Connect,
    Disconnect,
    Poll,
    Post,
    Receive,
    Reply,
    SendFrame,
    StateChange,
)
from ..protocol.events import HANDSHAKE, TIMEOUT, WS_PING
from .ajax import AjaxHttp
from .errors import ChskClosed, ChskError, ChskTimeout, ConnectionRejected, ConnectTimeout, SenteError, describe_error
from .messages import ClientEventMsg, WireRecord
from .transports import TokenSource, Transports, tls_context
from .ws import WsLink

__all__ = [  # the names this module had before errors, messages and transports moved out (still importable here)
    "ChskClosed", "ChskError", "ChskTimeout", "Client", "ClientEventMsg", "ConnectTimeout", "ConnectionRejected",
    "Handler", "SenteError", "TokenSource", "WireRecord", "connect", "describe_error", "tls_context",
]

log = logging.getLogger("sente.client")

SYSTEM_IDS = frozenset({STATE, HANDSHAKE, WS_PING})
Handler = Callable[["ClientEventMsg"], Awaitable[None] | None]


def _split_url(url: str) -> tuple[str, str, str]:
    """``(http_base, ws_base, path)`` from an ``http(s)://`` or ``ws(s)://`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"expected an absolute URL like http://host:port/chsk, got {url!r}")
    scheme = scheme.lower()
    secure = scheme in ("https", "wss")
    if scheme not in ("http", "https", "ws", "wss"):
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    host, slash, path = rest.partition("/")
    path = "/" + path if slash else "/chsk"
    path = path.split("?", 1)[0]
    return f"{'https' if secure else 'http'}://{host}", f"{'wss' if secure else 'ws'}://{host}", path



class Client(Transports):
    """A Sente client. Create it with :func:`connect` (or call ``start``/``close`` yourself).

    ``timeout`` arguments are seconds; Sente-named options (``ws_kalive_ms``...) are milliseconds. ``ssl`` is for
    ``https://``/``wss://`` URLs: an :class:`ssl.SSLContext` (e.g. trusting your own CA), False to skip
    verification (tests only), None for the system's CAs.
    """

    def __init__(
        self,
        url: str,
        *,
        csrf_token: TokenSource = None,
        type: ClientType = "auto",
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        packer: str | Packer = "edn",
        str_keys: bool = True,
        client_id: str | None = None,
        ws_kalive_ms: int | None = 20_000,
        ws_ping_timeout_ms: int = 5_000,
        ajax_timeout_ms: int = 60_000,
        backoff_ms_fn: Callable[[int], int] | None = None,
        max_backoff_ms: int | None = None,
        open_timeout: float | None = 10.0,
        trace: Callable[[WireRecord], None] | bool | None = None,
        rng: random.Random | None = None,
        recv_buffer: int = 2048,
        ssl: _ssl.SSLContext | bool | None = None,
    ) -> None:
        self.http_base, self.ws_base, self.path = _split_url(url)
        self.csrf_token = csrf_token
        items = params.items() if isinstance(params, Mapping) else (params or ())
        self.params = [(str(k), str(v)) for k, v in items if v is not None]
        hitems = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self.headers = [(str(k), str(v)) for k, v in hitems]
        self.packer = StrKeysPacker(get_packer(packer)) if str_keys else get_packer(packer)
        self.client_id = client_id or str(uuid.uuid4())
        self.open_timeout = open_timeout
        self.config = ClientConfig(
            type=type, ws_kalive_ms=ws_kalive_ms, ws_ping_timeout_ms=ws_ping_timeout_ms,
            ajax_timeout_ms=ajax_timeout_ms, backoff_ms_fn=backoff_ms_fn, max_backoff_ms=max_backoff_ms,
        )
        self.core = ClientCore(self.packer, self.config, rng=rng)
        self._trace_fn = trace if callable(trace) else None
        self._trace_info = trace is True
        self._t0 = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer = LoopTimer(self._running_loop, self._on_timer)
        self._pump_scheduled = False
        self._futures: dict[str, asyncio.Future[tuple[Any, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws: WsLink | None = None
        self._ws_task: asyncio.Task[Any] | None = None
        self._poll_task: asyncio.Task[Any] | None = None
        # https/wss: ``ssl`` is a context, False (verify nothing) or None (the system's CAs)
        self._ssl_context = tls_context(ssl) if self.http_base.startswith("https:") else None
        self._http = AjaxHttp(False if ssl is False else self._ssl_context or True)
        self._recv: asyncio.Queue[ClientEventMsg] = asyncio.Queue(recv_buffer)
        self._handlers: Handlers[Handler] = Handlers()
        self._waiters: list[tuple[Callable[[ClientState], bool], asyncio.Future[None]]] = []
        self._rejection: ConnectionRejected | None = None
        self._closed = False
        self.dropped_events = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> ClientState:
        """Sente's state: ``type``, ``open``, ``ever_opened``, ``uid``, ``handshake_data``, ``last_close``..."""
        return self.core.state

    async def start(self) -> Client:
        """Connect and wait for the handshake; raises :class:`ConnectionRejected` or :class:`ConnectTimeout`."""
        self._loop = asyncio.get_running_loop()
        self._t0 = time.monotonic()
        self.core.start(self._now())
        self._pump()
        try:
            await self._wait_open_or_rejected(self.open_timeout)
        except BaseException:
            await self.close()
            raise
        return self

    async def _wait_open_or_rejected(self, timeout: float | None) -> None:
        future = self._add_waiter(lambda s: s.open or self._rejection is not None)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            last = self.state.last_ws_error or self.state.last_close
            raise ConnectTimeout(f"no handshake from {self.http_base}{self.path} within {timeout} s ({last})") from None
        if not self.state.open and self._rejection is not None:
            raise self._rejection

    async def wait_for(self, predicate: Callable[[ClientState], bool], timeout: float = 10.0) -> ClientState:
        """Wait until ``predicate(state)`` holds (e.g. ``lambda s: s.open``); raises TimeoutError."""
        await asyncio.wait_for(self._add_waiter(predicate), timeout)
        return self.state

    async def wait_open(self, timeout: float = 10.0) -> ClientState:
        return await self.wait_for(lambda s: s.open, timeout)

    def _add_waiter(self, predicate: Callable[[ClientState], bool]) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self._running_loop().create_future()
        if predicate(self.state):
            waiter.set_result(None)
        else:
            self._waiters.append((predicate, waiter))
        return waiter

    def _check_waiters(self) -> None:
        keep = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate(self.state):
                future.set_result(None)
            else:
                keep.append((predicate, future))
        self._waiters = keep

    def disconnect(self) -> None:
        """Close on purpose (Sente's ``chsk-disconnect!``): no reconnect until :meth:`reconnect`."""
        self.core.disconnect(self._now())
        self._pump()

    def reconnect(self) -> None:
        """Close and connect afresh (Sente's ``chsk-reconnect!``), e.g. after login so the uid is re-read."""
        self.core.reconnect(self._now())
        self._pump()

    def break_connection(self, code: int = 3000) -> None:
        """For tests: drop the connection as a network failure would (WS close 3000 / abort the poll)."""
        self.core.break_connection(self._now(), code)
        self._pump()

    async def close(self) -> None:
        """Disconnect and release everything (sockets, HTTP pool, timers, tasks)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            if not self.core.stopped:
                self.core.disconnect(self._now())
            self._pump()
        self._timer.cancel()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._ws is not None:
            self._ws.close(1000, "CLOSE_NORMAL")
            self._ws = None
        for future in self._futures.values():
            if not future.done():
                future.set_result((CLOSED, "client closed"))
        self._futures.clear()
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        await self._http.close()

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ sending

    def send(self, event: Any) -> bool:
        """Send ``[id, data]`` (id as ``"ns/name"`` or Keyword) without waiting for a reply; False when not open."""
        sent, _ = self.core.send(event, self._now())
        self._pump()
        return sent

    async def request(self, event: Any, timeout: float = 10.0) -> Any:
        """Send an event and return the server's reply.

        Raises :class:`ChskTimeout`, :class:`ChskClosed` or :class:`ChskError` for Sente's three cb errors.
        """
        _, key = self.core.send(event, self._now(), reply=True, timeout_ms=max(0, round(timeout * 1000)))
        assert key is not None
        future: asyncio.Future[tuple[Any, Any]] = self._running_loop().create_future()
        self._futures[key] = future
        self._pump()
        value, detail = await future
        if value is TIMEOUT:
            raise ChskTimeout(f"no reply to {event[0]} within {timeout} s")
        if value is CLOSED:
            raise ChskClosed(f"not connected: {event[0]} was not answered" + (f" ({detail})" if detail else ""))
        if value is ERROR:
            status, body = (detail if isinstance(detail, tuple) else (None, None))
            raise ChskError(f"{event[0]} failed: {detail}", status, body)
        return value

    # ------------------------------------------------------------------ receiving

    async def events(self, *, system: bool = False) -> AsyncIterator[ClientEventMsg]:
        """Messages as they arrive: pushed events (and with ``system=True`` also ``:chsk/state``,
        ``:chsk/handshake`` and ``:chsk/ws-ping``, as on Sente's ``ch-recv``). One consumer at a time."""
        while True:
            msg = await self._recv.get()
            if system or msg.id not in SYSTEM_IDS:
                yield msg

    async def next_event(self, timeout: float = 10.0, *, system: bool = False) -> ClientEventMsg:
        """The next message (see :meth:`events`); raises TimeoutError."""
        async def get() -> ClientEventMsg:
            while True:
                msg = await self._recv.get()
                if system or msg.id not in SYSTEM_IDS:
                    return msg

        return await asyncio.wait_for(get(), timeout)

    def on(self, event: str | Keyword) -> Callable[[Handler], Handler]:
        """Decorator: call the handler for every message with this id (``"chsk/state"`` works too)."""
        return self._handlers.on(event)

    def on_default(self, handler: Handler) -> Handler:
        """Decorator: the handler for messages without a handler of their own."""
        return self._handlers.on_default(handler)

    def _receive(self, event: list[Any]) -> None:
        msg = ClientEventMsg(event)
        if self._recv.full():
            self._recv.get_nowait()  # sliding buffer, as Sente's
            self.dropped_events += 1
        self._recv.put_nowait(msg)
        handler = self._handlers.get(msg.id)
        if handler is not None:
            try:
                result = handler(msg)
                if inspect.isawaitable(result):
                    self._spawn(_guarded(result, msg.id))
            except Exception:
                log.exception("client handler failed for %r", msg.id)
        if msg.id is STATE:
            change: StateChange = msg.data
            if change.first_open:
                log.debug("first open: uid %r", change.new.uid)

    # ------------------------------------------------------------------ driving the core

    def _pump(self) -> None:
        self._pump_scheduled = False
        for action in self.core.take_actions():
            self._execute(action)
        self._check_waiters()
        self._arm_timer()

    def _arm_timer(self) -> None:
        self._timer.arm(None if self._closed else self.core.next_deadline())

    def _on_timer(self) -> None:
        self.core.tick(self._now())
        self._pump()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self._running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _execute(self, action: Action) -> None:
        if isinstance(action, Receive):
            self._receive(action.event)
        elif isinstance(action, Reply):
            future = self._futures.pop(action.key, None)
            if future is not None and not future.done():
                future.set_result((action.value, action.detail))
        elif isinstance(action, SendFrame):
            self._trace("c2s", "ws", "ws_frame", raw=action.data)
            if self._ws is not None:
                self._ws.send(action.data)
        elif isinstance(action, Connect):
            if not self._closed:
                self._ws_task = self._spawn(self._ws_connect(action.conn))
        elif isinstance(action, Poll):
            if not self._closed:
                self._poll_task = self._spawn(self._ajax_poll(action))
        elif isinstance(action, Post):
            self._spawn(self._ajax_post(action))
        elif isinstance(action, Disconnect):
            self._disconnect(action)

    def _disconnect(self, action: Disconnect) -> None:
        if action.transport == "ws":
            link, self._ws = self._ws, None
            if link is not None and link.connected:
                self._trace("c2s", "ws", "ws_close", close_code=action.code, raw=action.reason)
                link.close(action.code, action.reason)
                if action.code != 1000:
                    self._ws = link  # break_connection: the close is reported and the core reconnects
            elif self._ws_task is not None and not self._ws_task.done():
                self._ws_task.cancel()
        elif self._poll_task is not None and not self._poll_task.done():
            self._poll_task.cancel()


async def _guarded(awaitable: Awaitable[None], event: Any) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("client handler failed for %r", event)


@contextlib.asynccontextmanager
async def connect(url: str, **options: Any) -> AsyncIterator[Client]:
    """``async with connect("http://host/chsk", csrf_token=..., headers={"Cookie": ...}) as client:``

    Yields the client once the handshake has arrived; raises :class:`ConnectionRejected` (status and
    body) when the server refuses it, :class:`ConnectTimeout` when no handshake comes in ``open_timeout``.
    Options are :class:`Client`'s.
    """
    client = Client(url, **options)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
