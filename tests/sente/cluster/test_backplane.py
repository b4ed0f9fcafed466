"""Two servers on one shared-memory segment behave as one: presence, pushes and broadcasts cross workers.

Each server runs in its own thread and event loop on its own port, attached to the segment with its own
worker index, exactly as two broker workers are (minus the shared port). Clients are our own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from csente import shm
from sente.app import SenteApp
from sente.client import connect
from sente.cluster.backplane import (
    UIDPORT_CLOSE,
    ShmBackplane,
    client_key,
    read_long_uid,
    registry_key,
    remove_long_uids,
    uid_key,
)
from sente.server import ChannelSocketServer
from tests.sente.conformance.replay import ServerThread


@pytest.fixture
def segment() -> Iterator[str]:
    name = f"sente-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    state = shm.SharedState.create(name, workers=2, uid_slots=1024, ring_bytes=65536)
    try:
        yield name
    finally:
        remove_long_uids(state.path)  # as the supervisor does when the broker stops
        state.close()
        state.unlink()


class Worker:
    def __init__(self, segment: str, index: int) -> None:
        self.state = shm.SharedState.attach(segment, index)
        self.events: list[Any] = []
        self.server = ChannelSocketServer(
            csrf_token_fn=None,
            user_id_fn=lambda req: req.param("uid"),
            backplane=ShmBackplane(self.state),
            send_buf_ms_ws=5,
            ms_allow_reconnect_before_close_ws=200,
        )
        self.server.on_default(lambda msg: self.events.append(msg.event))
        self.thread = ServerThread(lambda: SenteApp(self.server, self.server.asgi())).start()
        self.url = f"http://127.0.0.1:{self.thread.port}/chsk"

    def call(self, fn: Any) -> Any:
        """Run ``fn`` on the server's own loop (the API is not thread-safe) and return its result."""
        assert self.thread.loop is not None
        return asyncio.run_coroutine_threadsafe(_call(fn), self.thread.loop).result(5)

    def close(self) -> None:
        self.thread.stop()
        self.state.close()


async def _call(fn: Any) -> Any:
    return fn()


@contextlib.contextmanager
def workers(segment: str) -> Iterator[tuple[Worker, Worker]]:
    started: list[Worker] = []
    try:
        started.append(Worker(segment, 0))
        started.append(Worker(segment, 1))
        yield started[0], started[1]
    finally:
        for w in started:
            w.close()


@contextlib.asynccontextmanager
async def client(worker: Worker, uid: str) -> AsyncIterator[Any]:
    async with connect(worker.url, type="ws", params={"uid": uid}) as c:
        yield c


async def next_event(c: Any) -> Any:
    return await asyncio.wait_for(c.next_event(), 5)


async def until(predicate: Any, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_a_push_sent_on_one_worker_reaches_the_uid_on_the_other(segment: str) -> None:
    async def main(a: Worker, b: Worker) -> None:
        async with client(b, "bob") as bob:
            await until(lambda: a.call(lambda: "bob" in a.server.connected_uids.ws))
            assert a.call(lambda: a.server.send("bob", ["test/pushed", {"n": 1}])) is True
            msg = await next_event(bob)
            assert (msg.id.text, msg.data) == ("test/pushed", {"n": 1})

    with workers(segment) as (a, b):
        asyncio.run(main(a, b))


def test_a_broadcast_reaches_clients_on_both_workers(segment: str) -> None:
    async def main(a: Worker, b: Worker) -> None:
        async with client(a, "alice") as alice, client(b, "bob") as bob:
            await until(lambda: b.call(lambda: b.server.connected_uids.any) == {"alice", "bob"})
            b.call(lambda: b.server.broadcast(["test/all", "hi"]))
            for c in (alice, bob):
                msg = await next_event(c)
                assert (msg.id.text, msg.data) == ("test/all", "hi")

    with workers(segment) as (a, b):
        asyncio.run(main(a, b))


def test_uidport_events_fire_once_for_a_uid_on_both_workers(segment: str) -> None:
    async def main(a: Worker, b: Worker) -> None:
        async with client(a, "carol"), client(b, "carol"):
            await until(lambda: a.events)
            await asyncio.sleep(0.2)
        await until(lambda: len(a.events) + len(b.events) >= 2)
        await asyncio.sleep(0.3)

    with workers(segment) as (a, b):
        asyncio.run(main(a, b))
        opens = [e for e in a.events + b.events if e[0].text == "chsk/uidport-open"]
        closes = [e for e in a.events + b.events if e[0].text == "chsk/uidport-close"]
        assert [e[1] for e in opens] == ["carol"]
        assert [e[1] for e in closes] == ["carol"]


def test_send_to_a_uid_on_no_worker_is_false(segment: str) -> None:
    with workers(segment) as (a, _):
        assert a.call(lambda: a.server.send("nobody", ["test/pushed", 1])) is False


# ---------------------------------------------------------------------- Ajax clients across workers, record level


class Peer:
    """A stand-in core: records what the backplane hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def ajax_claimed_elsewhere(self, uid: Any, client_id: str, owner: Any, now: float) -> None:
        self.calls.append(("claimed", uid, client_id, owner))

    def ajax_handoff(self, uid: Any, client_id: str, batches: list[str | bytes], now: float,
                     final: bool = True) -> None:
        self.calls.append(("handoff", uid, client_id, batches, final))


@contextlib.contextmanager
def backplanes(segment: str) -> Iterator[tuple[list[ShmBackplane], list[Peer], list[Any]]]:
    """Two workers' backplanes on ``segment``, bound to recording peers; their states closed at the end."""
    states = [shm.SharedState.attach(segment, i) for i in range(2)]
    try:
        bps = [ShmBackplane(s) for s in states]
        peers = [Peer(), Peer()]
        for bp, peer in zip(bps, peers, strict=True):
            bp.bind(peer)
        yield bps, peers, states
    finally:
        for s in states:
            s.close()


def deliver(bp: ShmBackplane, left: list[Any] | None = None) -> None:
    bp._on_uid_left = left.append if left is not None else None
    for record in bp.state.drain(256):
        bp._dispatch(*record)


def test_ajax_clients_are_known_cluster_wide_and_hidden_from_connected_uids(segment: str) -> None:
    with backplanes(segment) as (bps, _, _):
        a, b = bps
        long_uid = "u" * 200  # longer than the registry's keys: the client key is a digest
        for uid in ("bob", long_uid):
            assert not b.client_known(uid, "c1")
            a.client_join(uid, "c1")
            assert b.client_known(uid, "c1") and a.client_known(uid, "c1")
        assert len(client_key(long_uid, "c1", a.state.max_key)) <= a.state.max_key
        assert a.uids("any") == frozenset() and a.uids("ajax") == frozenset()
        assert b.remote("bob", "ajax") and not a.remote("bob", "ajax")  # registered, never polled: pushes go there
        a.client_leave("bob", "c1")
        assert not b.client_known("bob", "c1")


def test_a_claim_reaches_the_holder_and_its_handoff_comes_back_to_the_claimant(segment: str) -> None:
    with backplanes(segment) as (bps, peers, _):
        a, b = bps
        a.client_join("bob", "c1")
        assert a.claim_poll("bob", "c1") == 0  # nobody else holds it: no record
        b.client_join("bob", "c1")
        assert b.claim_poll("bob", "c1") == 1
        deliver(a)
        assert peers[0].calls == [("claimed", "bob", "c1", 1)]
        a.hand_off("bob", "c1", 1, ["[[[:t/p 1]] nil]", "[[[:t/p 2]] nil]"])
        a.hand_off("bob", "c1", 1, [b"\x00bin"], final=False)
        deliver(b)
        assert peers[1].calls == [
            ("handoff", "bob", "c1", ["[[[:t/p 1]] nil]", "[[[:t/p 2]] nil]"], True),
            ("handoff", "bob", "c1", [b"\x00bin"], False),
        ]


def test_a_large_handoff_is_split_and_only_its_last_part_is_final(segment: str) -> None:
    with backplanes(segment) as (bps, peers, _):
        a, b = bps
        b.client_join("bob", "c1")
        big = ["x" * (a.state.max_payload // 3) for _ in range(5)]
        a.hand_off("bob", "c1", 1, big)
        deliver(b)
        assert [c[4] for c in peers[1].calls][-1] is True and not any(c[4] for c in peers[1].calls[:-1])
        assert [x for c in peers[1].calls for x in c[3]] == big


def test_ajax_text_batches_and_uid_left_records_do_not_share_a_kind(segment: str) -> None:
    with backplanes(segment) as (bps, _, _):
        a, b = bps
        got: list[Any] = []
        b._on_batch = lambda t, uid, data: got.append((t, uid, data))
        b.client_join("bob", "c1")  # an Ajax registration of bob on worker 1: the batch goes there
        a.publish("ajax", "bob", "[[[:t/p 1]] nil]")
        left: list[Any] = []
        a.state.publish(1, shm.KIND_CONTROL, client_key("bob", "c1", a.state.max_key), b"uidport-close")
        a.state.publish(1, shm.KIND_CONTROL, b'"carol"', b"uidport-close")
        deliver(b, left)
        assert got == [("ajax", ("bob",), "[[[:t/p 1]] nil]")]
        assert left == ["carol"]  # a reclaimed client key is not a uid


def test_chsk_close_sent_on_one_worker_closes_the_uid_on_the_other(segment: str) -> None:
    async def main(a: Worker, b: Worker) -> None:
        async with client(b, "dave") as dave:
            closed = asyncio.get_running_loop().create_future()
            dave.on("chsk/state")(
                lambda msg: closed.done() or (msg.data.old.open and not msg.data.new.open and closed.set_result(1))
            )
            await until(lambda: a.call(lambda: "dave" in a.server.connected_uids.ws))
            assert a.call(lambda: a.server.send("dave", ["chsk/close"])) is True
            await asyncio.wait_for(closed, 5)

    with workers(segment) as (a, b):
        asyncio.run(main(a, b))


# ---------------------------------------------------------------------- long uids, uid sets, full inboxes


def test_a_uid_longer_than_a_registry_key_is_listed_by_every_worker_and_reported_when_its_worker_dies(
        segment: str) -> None:
    with backplanes(segment) as (bps, _, _):
        a, b = bps
        long_uid = "ü" * 300
        assert len(uid_key(long_uid)) > a.state.max_key
        assert b.join(long_uid, "ws") is True
        key = registry_key(long_uid, a.state.max_key)
        assert len(key) <= a.state.max_key
        assert a.uids("ws") == {long_uid} and a.connected(long_uid) and a.remote(long_uid, "ws")
        # what the supervisor sends when worker 1 dies holding it: the text rides in the payload
        reclaimed = a.state.reclaim_worker(1, force=True)
        assert reclaimed == [key]
        text = read_long_uid(a.state.path, key, a.state.workers)
        assert text == uid_key(long_uid)
        a.state.publish(0, shm.KIND_CONTROL, key, UIDPORT_CLOSE + b" " + text)
        left: list[Any] = []
        deliver(a, left)
        assert left == [long_uid]


def test_the_text_of_a_long_uid_is_kept_only_while_its_worker_holds_it(segment: str) -> None:
    with backplanes(segment) as (bps, _, _):
        a, b = bps
        long_uid = "room/" + "x" * 200
        key = registry_key(long_uid, a.state.max_key)
        b.join(long_uid, "ws")
        b.join(long_uid, "ajax")
        b.leave(long_uid, "ws")
        assert read_long_uid(a.state.path, key, 2) == uid_key(long_uid)
        assert b.leave(long_uid, "ajax") is True
        assert read_long_uid(a.state.path, key, 2) is None
        assert a.uids("any") == frozenset()


def test_a_batch_for_many_uids_is_one_record_carrying_the_receivers_share(segment: str) -> None:
    with backplanes(segment) as (bps, _, _):
        a, b = bps
        for i in range(500):
            (b if i % 2 else a).join(f"user{i}", "ws")
        got: list[Any] = []
        b._on_batch = lambda t, uids, data: got.append((t, uids, data))
        a.publish_to("ws", [f"user{i}" for i in range(500)], "[[[:t/b 1]] nil]")
        deliver(b)
        assert len(got) == 1
        transport, uids, data = got[0]
        assert (transport, data) == ("ws", "[[[:t/b 1]] nil]")
        assert sorted(uids) == sorted(f"user{i}" for i in range(1, 500, 2))  # worker 1's share only


def test_a_full_inbox_holds_records_back_in_order_instead_of_dropping_them(segment: str) -> None:
    async def main(a: ShmBackplane, b: ShmBackplane) -> None:
        b.join("bob", "ws")
        got: list[Any] = []
        b._on_batch = lambda t, uids, data: got.append(data)
        payload = "[[[:t/p \"" + "x" * 4000 + "\"]] nil]"
        for n in range(200):  # ~800 KB for a 64 KiB lane
            a.publish_to("ws", ["bob"], payload.replace("[:t/p", f"[:t/p{n}"))
        assert a.waiting > 0
        deadline = asyncio.get_running_loop().time() + 5
        while (a.waiting or len(got) < 200) and asyncio.get_running_loop().time() < deadline:
            deliver(b)
            await asyncio.sleep(0.002)
        assert [d[:len("[[[:t/pN")] for d in got[:3]] == ["[[[:t/p0", "[[[:t/p1", "[[[:t/p2"]
        assert [int(d[len("[[[:t/p"):d.index(" ")]) for d in got] == list(range(200))
        assert a.state.stats(1)["dropped"] == 0

    with backplanes(segment) as (bps, _, _):
        asyncio.run(main(*bps))


def test_past_the_outbox_cap_records_are_dropped_counted_and_logged_once(
        segment: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main(a: ShmBackplane, b: ShmBackplane) -> None:
        b.join("bob", "ws")
        a.max_outbox_bytes = 100_000
        for _ in range(300):
            a.publish_to("ws", ["bob"], "[[[:t/p \"" + "x" * 4000 + "\"]] nil]")
        a.stop()

    with backplanes(segment) as (bps, _, states):
        asyncio.run(main(*bps))
        dropped = bps[0].state.stats(1)["dropped"]
        delivered = len(states[1].drain(1000))
        assert dropped > 0 and dropped + delivered == 300
        lines = [r for r in caplog.records if "dropped" in r.getMessage() and r.name == "sente.cluster"]
        assert len(lines) == 1, [r.getMessage() for r in lines]


def test_a_record_larger_than_an_inbox_takes_goes_in_pieces_in_order_behind_what_waits(segment: str) -> None:
    async def main(a: ShmBackplane, b: ShmBackplane) -> None:
        b.join("bob", "ws")
        got: list[Any] = []
        b._on_batch = lambda t, uids, data: got.append((uids, data))
        for n in range(40):  # fills the lane: the rest waits in the outbox
            a.publish_to("ws", ["bob"], f"[[[:t/p {n} \"{'x' * 4000}\"]] nil]")
        huge = "[[[:t/huge \"" + "x" * (3 * a.state.max_payload) + "\"]] nil]"
        a.publish("ws", None, huge)  # a broadcast three inboxes long
        many = [f"user-{i:03d}-" + "x" * 90 for i in range(600)]  # a uid frame larger than an inbox
        for uid in many:
            b.join(uid, "ws")
        a.publish_to("ws", many, "[[[:t/room 1]] nil]")
        deadline = asyncio.get_running_loop().time() + 5
        while (a.waiting or len(got) < 42) and asyncio.get_running_loop().time() < deadline:
            deliver(b)
            await asyncio.sleep(0.002)
        assert [d for _, d in got[:40]] == [f"[[[:t/p {n} \"{'x' * 4000}\"]] nil]" for n in range(40)]
        assert got[40] == (None, huge)
        assert got[41] == (tuple(many), "[[[:t/room 1]] nil]")
        assert len(got) == 42 and a.state.stats(1)["dropped"] == 0

    with backplanes(segment) as (bps, _, _):
        asyncio.run(main(*bps))


def test_records_waiting_for_a_worker_that_exits_are_dropped_not_handed_to_its_replacement(segment: str) -> None:
    async def main(a: ShmBackplane, b: ShmBackplane) -> None:
        b.join("bob", "ws")
        for n in range(40):  # more than the lane holds: the rest waits for worker 1
            a.publish_to("ws", ["bob"], f"[[[:t/p {n} \"{'x' * 4000}\"]] nil]")
        waiting = a.waiting
        assert waiting > 0
        a.state.reclaim_worker(1, force=True)  # worker 1 died; the supervisor took its inbox back
        a._offer()
        assert a.waiting == 0
        assert a.state.stats(1)["dropped"] == waiting
        assert b.state.drain(256) == []  # nothing of it reached the (discarded) inbox after the reclaim

    with backplanes(segment) as (bps, _, _):
        asyncio.run(main(*bps))


def test_connected_uids_are_read_once_per_change_in_the_broker(segment: str) -> None:
    here, there = shm.SharedState.attach(segment, 0), shm.SharedState.attach(segment, 1)
    try:
        backplane = ShmBackplane(here)
        there.uid_connect(registry_key("alice", there.max_key), shm.WS)
        first = backplane.uids("any")
        assert first == {"alice"}
        assert backplane.uids("any") is first  # nothing changed: the same set, no scan
        there.uid_connect(registry_key("bob", there.max_key), shm.AJAX)  # another worker's change is seen
        assert backplane.uids("any") == {"alice", "bob"} and backplane.uids("ws") == {"alice"}
        there.uid_disconnect(registry_key("alice", there.max_key), shm.WS)
        assert backplane.uids("any") == {"bob"} and backplane.uids("ws") == frozenset()
    finally:
        here.close()
        there.close()
