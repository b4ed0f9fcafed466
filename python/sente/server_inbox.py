"""The receive side of :class:`~sente.server.ChannelSocketServer`: the buffer of event messages its clients send.

Event messages the core dispatches wait in one bounded buffer (sliding, as Sente's: when full, the oldest goes) for
the router (the ``@on`` handlers) or an ``events()`` iterator. It is fair between clients: a WebSocket holding its
share of the buffer stops being read until the handlers catch up (an Ajax POST at its share is answered 429 by the
ASGI face), and one that floods a full buffer is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from csente.types import Keyword

from .handlers import Handlers
from .protocol.config import ServerConfig
from .protocol.ratelog import RateLimitedLog
from .protocol.server import EventMsg
from .protocol.stats import Counters
from .transport.asgi import AsgiWebSocket
from .transport.websocket import WsConnection

log = logging.getLogger("sente.server")
_client_log = RateLimitedLog(log)  # conditions a client can cause: one line per interval per kind

Handler = Callable[[EventMsg], Awaitable[None] | None]
Source = WsConnection | AsgiWebSocket | tuple[str, str]
"""Where an event message came from, for fairness: its WebSocket, or ``("ajax", client-id)``."""


class Inbox:
    """The receive buffer, the router and the handler registry of a server (a mixin of ChannelSocketServer's)."""

    config: ServerConfig
    stats: Counters
    dropped_events: int
    _recv: asyncio.Queue[tuple[EventMsg, Source | None]] | None
    _recv_size: int
    _readers: int  # the router and events() iterators reading the receive buffer now
    _source: Source | None  # the connection whose message the core is handling
    _queued: dict[Source, int]  # messages each source has in the receive buffer
    _paused: set[WsConnection]  # bridge WebSockets not read until the handlers catch up
    _handlers: Handlers[Handler]
    _router: asyncio.Task[None] | None

    def _init_inbox(self, recv_buffer: int) -> None:
        """The empty buffer (made on first use) of at most ``recv_buffer`` messages, no handlers, no router."""
        self.dropped_events = 0
        self._recv = None
        self._recv_size = recv_buffer
        self._readers = 0
        self._source = None
        self._queued = {}
        self._paused = set()
        self._handlers = Handlers()
        self._router = None

    def on(self, event: str | Keyword) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of one event id (``"ns/name"`` or a Keyword)."""
        return self._handlers.on(event)

    def on_default(self, handler: Handler) -> Handler:
        """Decorator registering the handler for events with no handler of their own."""
        return self._handlers.on_default(handler)

    async def events(self) -> AsyncIterator[EventMsg]:
        """Event messages as they arrive (an async iterator); the router reads the same stream."""
        queue = self._queue()
        self._readers += 1
        try:
            while True:
                msg, source = await queue.get()
                self._taken(source)
                yield msg
        finally:
            self._readers -= 1

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
            self._readers += 1
            try:
                while True:
                    msg, source = await queue.get()
                    self._taken(source)
                    try:
                        result = route(msg)
                        if inspect.isawaitable(result):
                            await result
                    except Exception as e:
                        self.stats.handler_errors += 1
                        _client_log.warning("handler", "the handler of %r (uid %r) raised %r", msg.id, msg.uid, e,
                                            exc_info=e)
            finally:
                self._readers -= 1

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

    def _queue(self) -> asyncio.Queue[tuple[EventMsg, Source | None]]:
        if self._recv is None:
            self._recv = asyncio.Queue(self._recv_size)
        return self._recv

    def _enqueue(self, msg: EventMsg) -> None:
        queue = self._queue()
        source = self._source if msg.transport is not None else None  # system events have no source
        if queue.full():
            cap = self.config.max_queued_events_per_client
            if source is not None and self._readers and self._queued.get(source, 0) >= cap:
                self._flooded(source)  # its own message goes, not someone else's
                return
            _, dropped = queue.get_nowait()  # a sliding buffer, as Sente's: the oldest message goes
            self._taken(dropped)
            self.dropped_events += 1
            self.stats.dropped_events += 1
            _client_log.warning("recv_full", "receive buffer full (%d): dropped the oldest event message",
                                self._recv_size)
        if msg.reply is not None:
            msg.reply = self._timed_reply(msg.reply)
        queue.put_nowait((msg, source))
        if source is not None:
            self._queued[source] = count = self._queued.get(source, 0) + 1
            if self._readers and isinstance(source, WsConnection):
                self._throttle(source, count, queue)

    def _throttle(self, conn: WsConnection, count: int,
                  queue: asyncio.Queue[tuple[EventMsg, Source | None]]) -> None:
        """Fairness: stop reading a WebSocket at its share of the receive buffer, or when the buffer is nearly
        full (frames already read still arrive: one read can hold many)."""
        cap = self.config.max_queued_events_per_client
        if (count >= cap or queue.qsize() * 10 >= self._recv_size * 9) and conn not in self._paused:
            self._paused.add(conn)
            conn.pause_reading()

    def _flooded(self, source: Source) -> None:
        """The receive buffer is full and ``source`` holds its share of it already: its new message is dropped
        and a WebSocket is closed with ``flood_close_code`` (an Ajax POST at its share was answered 429)."""
        self.dropped_events += 1
        self.stats.dropped_events += 1
        if isinstance(source, tuple) or source.closed:
            return
        self.stats.count_rejection("flood")
        _client_log.warning("flood", "closing a flooding WebSocket (client-id %r): receive buffer full, %d of its "
                            "events waiting", source.request.param("client-id"), self._queued.get(source, 0))
        source.close(self.config.flood_close_code, "too many events")

    def _taken(self, source: Source | None) -> None:
        """A message left the receive buffer: resume the WebSockets paused for it once below half."""
        if source is None:
            return
        count = self._queued.get(source, 0) - 1
        if count > 0:
            self._queued[source] = count
        else:
            self._queued.pop(source, None)
        if self._paused and (self._recv is None or self._recv.qsize() * 2 <= self._recv_size):
            half = self.config.max_queued_events_per_client // 2
            for conn in [c for c in self._paused if self._queued.get(c, 0) <= half]:
                self._paused.discard(conn)
                conn.resume_reading()

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
