"""SIGTERM drains ``sente serve --workers 2`` without losing what it accepted: every broadcast accepted before the
signal reaches every client before its 1012 close, whichever worker accepted it and whichever holds the client.

A sender client sends numbered ``:test/broadcast-all`` events and then an echo with a callback: the echo's reply
says the broadcasts before it were handled (the router runs events in order), so they are accepted. A few
milliseconds later the supervisor gets SIGTERM. The send buffer's window is 200 ms, so the broadcasts are still
buffered on the worker that accepted them when both workers start draining (each at its own uvicorn tick, up to
100 ms after the signal): without a cluster-wide drain, the worker holding the other clients closed them first
in about half the runs (by the second run, on the code before this test). Repeated over fresh brokers; each run
must lose nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Any

from sente.edn import Keyword
from tests.sente.cluster.test_hostile_delivery import Listener
from tests.sente.cluster.test_supervisor import IO_TIMEOUT, SHUTDOWN_TIMEOUT, cluster

K = Keyword
RUNS = 3
LISTENERS = 20
BROADCASTS = 30


async def one_drain(port: int, proc: Any, delay: float) -> list[str]:
    """Broadcasts, then SIGTERM ``delay`` s after the last was accepted; what each listener missed."""
    async with contextlib.AsyncExitStack() as stack:
        listeners = [Listener(f"drain{i}") for i in range(LISTENERS)]
        for listener in listeners:
            await listener.open(port, stack)
        closes: dict[str, int | None] = {}
        for listener in listeners:
            listener.client.on("chsk/state")(
                lambda msg, uid=listener.uid: closes.setdefault(uid, (msg.data.new.last_ws_close or {}).get("code"))
                if msg.data.old.open and not msg.data.new.open else None
            )
        sender = listeners[0].client
        await asyncio.sleep(0.1)
        for n in range(BROADCASTS):
            sender.send([K("test/broadcast-all"), n])
        assert await sender.request([K("test/echo"), "accepted"], timeout=IO_TIMEOUT) == "accepted"
        await asyncio.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT + 2
        while len(closes) < LISTENERS and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert set(closes.values()) == {1012}, closes
        return [f"{listener.uid} missed {sorted(set(range(BROADCASTS)) - set(listener.got))}"
                for listener in listeners if sorted(listener.got) != list(range(BROADCASTS))]


def test_a_drain_delivers_every_accepted_broadcast_before_closing_with_1012() -> None:
    rng = random.Random(13)
    for run in range(RUNS):
        with cluster("tests.sente.cluster.spread_app:app", "--send-buf-ms-ws", "200") as c:
            lost = asyncio.run(asyncio.wait_for(one_drain(c.port, c.proc, rng.uniform(0.0, 0.01)), 30))
            assert c.proc.wait(SHUTDOWN_TIMEOUT + 2) == 0
            assert not lost, f"run {run}: {lost}"
            assert "Traceback" not in c.log(), c.log()[-3000:]
