"""A blocking Sente client for scripts: :class:`Client` on an event loop in a background thread.

Same methods as the asyncio client, minus ``async``: ``request``, ``send``, ``next_event``/``events``,
``on``, ``state``, ``disconnect``, ``reconnect``, ``break_connection``, ``close`` (also a context
manager). Handlers registered with ``on`` run in the client's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from csente.types import Keyword

from ..protocol.client import ClientState
from .api import Client, Handler
from .messages import ClientEventMsg

T = TypeVar("T")


class SyncClient:
    """``with SyncClient(url, csrf_token=..., headers=...) as client: client.request([...])``.

    Connects in the constructor (raising what :func:`~sente.client.connect` raises); options are
    :class:`Client`'s.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sente-client", daemon=True)
        self._thread.start()
        self._closed = False

        async def make() -> Client:
            return Client(url, **options)

        self.client: Client = self._run(make())
        try:
            self._run(self.client.start())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return fn(*args)

        return self._run(call())

    @property
    def state(self) -> ClientState:
        return self.client.state

    def request(self, event: Any, timeout: float = 10.0) -> Any:
        return self._run(self.client.request(event, timeout))

    def send(self, event: Any) -> bool:
        return self._call(self.client.send, event)

    def next_event(self, timeout: float = 10.0, *, system: bool = False) -> ClientEventMsg:
        """The next pushed message; raises TimeoutError."""
        return self._run(self.client.next_event(timeout, system=system))

    def events(self, timeout: float | None = None, *, system: bool = False) -> Iterator[ClientEventMsg]:
        """Pushed messages; ends after ``timeout`` seconds without one (None: never ends)."""
        while True:
            try:
                yield self.next_event(timeout if timeout is not None else 1e9, system=system)
            except TimeoutError:
                return

    def on(self, event: str | Keyword) -> Callable[[Handler], Handler]:
        return self.client.on(event)

    def on_default(self, handler: Handler) -> Handler:
        return self.client.on_default(handler)

    def wait_for(self, predicate: Callable[[ClientState], bool], timeout: float = 10.0) -> ClientState:
        return self._run(self.client.wait_for(predicate, timeout))

    def wait_open(self, timeout: float = 10.0) -> ClientState:
        return self._run(self.client.wait_open(timeout))

    def disconnect(self) -> None:
        self._call(self.client.disconnect)

    def reconnect(self) -> None:
        self._call(self.client.reconnect)

    def break_connection(self, code: int = 3000) -> None:
        self._call(self.client.break_connection, code)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.client.close(), timeout=10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
