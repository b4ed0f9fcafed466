"""A worker killed (SIGKILL) in the middle of a push burst: nothing is lost for anyone it did not hold.

Sixteen WebSocket clients (our own client, reconnecting as Sente's does) spread over a 2-worker broker while
``GET /push`` requests, each on a new connection, keep pushing numbered events to every uid. Worker 1 is
killed mid-burst and restarted by the supervisor. Then:

* every client that stayed connected got every push a live worker accepted (a 200 from worker 0, or from
  worker 1 after its restart): the survivor's clients lose nothing, and no inbox is wedged;
* every client of the killed worker reconnected, and got every push sent after it was back.

Pushes the killed worker accepted in its last flush window die with it, as a process's buffers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from sente.client import connect

from .test_ajax_spread import fetch
from .test_supervisor import Cluster, cluster, wait_ready

CLIENTS = 16
BURST = 30


@pytest.fixture
def broker() -> Iterator[Cluster]:
    with cluster("tests.sente.cluster.spread_app:app") as c:
        yield c


class Tab:
    """One connected client and what it saw."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.got: set[int] = set()
        self.closes = 0
        self.is_open = False

    async def open(self, port: int, stack: contextlib.AsyncExitStack) -> None:
        status, _, token, headers = await fetch(port, "GET", f"/csrf-token?uid={self.uid}")
        assert status == 200
        cookie = next(v for k, v in headers if k.lower() == "set-cookie").split(";", 1)[0]
        client = await stack.enter_async_context(connect(
            f"http://127.0.0.1:{port}/chsk", type="ws", csrf_token=token, headers={"Cookie": cookie},
            max_backoff_ms=300,
        ))
        client.on("test/server-push")(lambda msg: self.got.add(msg.data))
        client.on("chsk/state")(lambda msg: self._state(msg.data))
        self.is_open = client.state.open

    def _state(self, change: Any) -> None:
        if change.old.open and not change.new.open:
            self.closes += 1
        self.is_open = change.new.open


async def push_all(port: int, tabs: list[Tab], n: int) -> dict[int, int]:
    """Push event ``n`` to every uid; {index of the tab: worker that accepted it} for the accepted ones."""
    accepted: dict[int, int] = {}
    for i, tab in enumerate(tabs):
        for _ in range(20):  # a request reaching the dead worker's socket fails: send it again
            try:
                status, worker, _, _ = await fetch(port, "GET", f"/push?to={quote(tab.uid)}&x={n}", timeout=2)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.02)
                continue
            if status == 200:
                accepted[i] = worker
            break
    return accepted


def test_sigkill_during_a_burst_loses_nothing_for_the_other_workers_clients(broker: Cluster) -> None:
    async def main() -> None:
        tabs = [Tab(f"user{i}") for i in range(CLIENTS)]
        async with contextlib.AsyncExitStack() as stack:
            for tab in tabs:
                await tab.open(broker.port, stack)
            victim = (await wait_ready(broker.port, {1}))[1]
            sent: list[tuple[int, dict[int, int]]] = []
            for n in range(BURST):
                if n == BURST // 3:
                    os.kill(victim, signal.SIGKILL)
                sent.append((n, await push_all(broker.port, tabs, n)))
            back = await wait_ready(broker.port, {1}, not_pid=victim)
            assert back[1] != victim, "worker 1 was restarted"
            reconnected = time.monotonic() + 30  # the killed worker's clients reconnect (backoff capped at 300 ms)
            while time.monotonic() < reconnected and not all(t.is_open for t in tabs):
                await asyncio.sleep(0.05)
            final = await push_all(broker.port, tabs, 1000)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(1000 in t.got for t in tabs):
                await asyncio.sleep(0.05)
            moved = [t for t in tabs if t.closes]  # before the exit stack disconnects everyone
            stayed = [t for t in tabs if not t.closes]

        assert moved and stayed, "the clients should have been spread over both workers"
        for i, tab in enumerate(tabs):
            assert i in final and 1000 in tab.got, f"{tab.uid} missed the push sent after the restart"
        for tab in stayed:
            i = tabs.index(tab)
            lost = [n for n, accepted in sent if accepted.get(i) == 0 and n not in tab.got]
            assert not lost, f"{tab.uid} (never disconnected) lost pushes {lost} that worker 0 accepted"

    asyncio.run(asyncio.wait_for(main(), 90))
