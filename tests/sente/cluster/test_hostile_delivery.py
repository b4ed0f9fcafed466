"""One client's bad input or heavy fan-out costs no other client a message (``sente serve --workers 2``).

* A lone UTF-16 surrogate in an event (``"\\uD800"`` is valid EDN) is written as Sente's JVM server writes it,
  ``?``, wherever it goes: a broadcast of it, an echo reply, over WebSocket and Ajax. Meanwhile a numbered
  broadcast stream reaches every other client whole, as does a numbered push stream to four of them, and the log
  has no traceback and no ERROR.
* ``broadcast(event, uids)`` (the test app's ``:test/broadcast-all`` broadcasts to ``connected-uids``) with
  16 KB payloads, in bursts, then one of 300 KB (more than an inbox record holds), while four of the clients also
  get a steady numbered stream of pushes (``GET /push``): every client on both workers gets every broadcast and
  every push, and no inbox record is dropped (``sente_ring_drops_total`` stays 0). Before one record
  per batch, each broadcast cost one record per remote uid and overflowed the 256 KiB inboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from sente.client import connect
from sente.edn import Keyword
from tests.sente.cluster.test_ajax_spread import fetch
from tests.sente.cluster.test_supervisor import EDN, Cluster, Conn, cluster
from tests.sente.conformance.replay import client_frame

K = Keyword
LISTENERS = 24
STREAM = 60
SURROGATE_EVENTS = 6
BURSTS, PER_BURST = 6, 8
PAD = 16_000
BIG = 300_000


@pytest.fixture
def broker() -> Iterator[Cluster]:
    with cluster("tests.sente.cluster.spread_app:app") as c:
        yield c


async def session(port: int, uid: str) -> tuple[str, str]:
    """(cookie, CSRF token) of a new session for ``uid``."""
    status, _, token, headers = await fetch(port, "GET", f"/csrf-token?uid={quote(uid)}")
    assert status == 200
    return next(v for k, v in headers if k.lower() == "set-cookie").split(";", 1)[0], token


class Listener:
    """A WebSocket client recording the broadcasts and the pushes it gets."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.got: list[Any] = []
        self.pushed: list[Any] = []
        self.client: Any = None

    async def open(self, port: int, stack: contextlib.AsyncExitStack) -> None:
        cookie, token = await session(port, self.uid)
        self.client = await stack.enter_async_context(connect(
            f"http://127.0.0.1:{port}/chsk", type="ws", csrf_token=token, headers={"Cookie": cookie},
        ))
        self.client.on("test/broadcast")(lambda msg: self.got.append(msg.data))
        self.client.on("test/server-push")(lambda msg: self.pushed.append(msg.data))


async def raw_ws(port: int, uid: str) -> Conn:
    """An attacker's WebSocket: raw frames, whatever text they carry."""
    cookie, token = await session(port, uid)
    conn = await Conn.open(port)
    await conn.upgrade(f"/chsk?client-id={uuid.uuid4()}&csrf-token={quote(token)}", {"Cookie": cookie})
    return conn


async def wait_for(pred: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def push_stream(port: int, listeners: list[Listener]) -> list[int]:
    """Push 0, 1, 2... to each of ``listeners`` (``GET /push``, on either worker) every 10 ms; the numbers sent."""
    sent = []
    for n in range(30):
        for listener in listeners:
            status, _, body, _ = await fetch(port, "GET", f"/push?to={listener.uid}&x={n}")
            assert status == 200, body
        sent.append(n)
        await asyncio.sleep(0.01)
    return sent


def assert_clean(broker: Cluster) -> None:
    log = broker.log()
    assert "Traceback" not in log, log[-4000:]
    assert not re.search(r"\b(ERROR|CRITICAL)\b", log), log[-4000:]


def test_a_lone_surrogate_is_written_as_sente_writes_it_and_costs_no_one_a_message(broker: Cluster) -> None:
    surrogate_event = b'[[:test/broadcast-all "\\uD800"] nil]'

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            listeners = [Listener(f"listener{i}") for i in range(LISTENERS)]
            for listener in listeners:
                await listener.open(broker.port, stack)
            sender = listeners[0].client
            attacker = await raw_ws(broker.port, "attacker")
            stack.callback(attacker.close)
            cookie, token = await session(broker.port, "ajax-attacker")
            ajax_headers = {"Cookie": cookie, "X-CSRF-Token": token}
            ajax_id = str(uuid.uuid4())
            await asyncio.sleep(0.2)
            pushes = asyncio.get_running_loop().create_task(push_stream(broker.port, listeners[1:5]))
            for n in range(STREAM):
                sender.send([K("test/broadcast-all"), n])
                if n % (STREAM // SURROGATE_EVENTS) == 0:
                    if n % 2:
                        attacker.writer.write(client_frame(0x1, surrogate_event))
                    else:
                        form = urlencode({"client-id": ajax_id, "ppstr": surrogate_event.decode()}, quote_via=quote)
                        status, _, body, _ = await fetch(broker.port, "POST", "/chsk", ajax_headers, form)
                        assert status == 200, body
                await asyncio.sleep(0.01)
            pushed = await pushes
            await wait_for(lambda: all(len(listener.got) >= STREAM + SURROGATE_EVENTS for listener in listeners)
                           and all(len(listener.pushed) >= len(pushed) for listener in listeners[1:5]))
            for listener in listeners[1:5]:
                assert sorted(listener.pushed) == pushed, f"{listener.uid} lost pushes"
            for listener in listeners:
                numbered = [x for x in listener.got if isinstance(x, int)]
                lost = sorted(set(range(STREAM)) - set(numbered))
                assert numbered == list(range(STREAM)), f"{listener.uid} lost {lost}"
                assert [x for x in listener.got if not isinstance(x, int)] == ["?"] * SURROGATE_EVENTS
            # the attacker's own connection still works, and its echo of lone surrogates comes back as "?"
            attacker.writer.write(client_frame(0x1, b'[[:test/echo ["\\uD800" "a\\uD83D\\uDE00b"]] "cb9"]'))
            for _ in range(200):  # the broadcasts it got as a connected uid come first
                _, frame = await attacker.frame()
                reply = EDN.unpack_envelope(frame.decode())
                if reply.cb_id == "cb9":
                    break
            assert reply == (["?", "a\U0001F600b"], "cb9")
            form = urlencode({"client-id": ajax_id, "ppstr": '[[:test/echo "x\\uDC00"] "cb1"]'}, quote_via=quote)
            status, _, body, _ = await fetch(broker.port, "POST", "/chsk", ajax_headers, form)
            assert status == 200 and EDN.unpack_envelope(body).payload == "x?", body

    asyncio.run(asyncio.wait_for(main(), 60))
    assert_clean(broker)


def test_broadcasts_to_a_uid_set_reach_every_client_on_every_worker(broker: Cluster) -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            listeners = [Listener(f"fan{i}") for i in range(LISTENERS)]
            for listener in listeners:
                await listener.open(broker.port, stack)
            sender = listeners[0].client
            await asyncio.sleep(0.2)
            pushes = asyncio.get_running_loop().create_task(push_stream(broker.port, listeners[1:5]))
            pad = "p" * PAD
            n = 0
            for _ in range(BURSTS):
                for _ in range(PER_BURST):  # one burst lands in one or two flush windows
                    sender.send([K("test/broadcast-all"), [n, pad]])
                    n += 1
                await asyncio.sleep(0.05)
            sender.send([K("test/broadcast-all"), [n, "q" * BIG]])  # larger than an inbox record: goes in pieces
            n += 1
            pushed = await pushes
            await wait_for(lambda: all(len(listener.got) >= n for listener in listeners)
                           and all(len(listener.pushed) >= len(pushed) for listener in listeners[1:5]))
            for listener in listeners[1:5]:  # the bystanders' pushes (from either worker: order is per sender)
                lost = sorted(set(pushed) - set(listener.pushed))
                assert sorted(listener.pushed) == pushed, f"{listener.uid} lost pushes {lost}"
            status, _, metrics, _ = await fetch(broker.port, "GET", "/metrics")
            assert status == 200

        for listener in listeners:
            got = [x[0] for x in listener.got]
            assert got == list(range(n)), f"{listener.uid} lost {sorted(set(range(n)) - set(got))}"
        drops = [float(v) for v in re.findall(r"^sente_ring_drops_total\{[^}]*\} (\S+)$", metrics, re.M)]
        assert drops and sum(drops) == 0, drops

    asyncio.run(asyncio.wait_for(main(), 60))
    assert_clean(broker)
