"""The broker's shared memory: uid registry, dead-worker reclamation, delivery rings, wake-ups.

Several "workers" are often attached from this one process (each attach is its own view with its own
index); the contention and crash tests use real processes ('fork' context). Every wait is bounded and
every segment is unlinked, also on failure.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import select
import signal
import struct
import time
import uuid
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csente.shm import (
    AJAX,
    ANY,
    KIND_BROADCAST,
    KIND_CONTROL,
    KIND_PUSH,
    WS,
    LayoutError,
    RegistryFull,
    SharedState,
    _SimulatedCrash,
)

CTX = mp.get_context("fork")
TIMEOUT = 10.0


def _name() -> str:
    return f"csente-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make():
    """make(workers=..., ...) -> (supervisor, name); everything made is unlinked at teardown."""
    made: list[SharedState] = []

    def _make(workers: int = 2, **kw):
        name = _name()
        sup = SharedState.create(name, workers=workers, **kw)
        made.append(sup)
        return sup, name

    yield _make
    for sup in made:
        sup.unlink()
        sup.close()


def _join_all(procs, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
        p.join(1)
    assert not alive, "a child process did not finish in time"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


# ---- registry: semantics --------------------------------------------------------------------------


def test_connect_disconnect_fire_once_for_the_whole_broker(make):
    sup, name = make(2, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    assert w0.uid_connect(b'"alice"', WS) is True  # nowhere -> somewhere
    assert w0.uid_connect(b'"alice"', AJAX) is False  # same worker, second connection
    assert w1.uid_connect(b'"alice"', WS) is False  # another worker: still connected somewhere
    assert sup.uid_counts(b'"alice"') == (2, 1)
    assert sup.holds(b'"alice"') and not sup.holds(b'"bob"')
    assert w0.uid_disconnect(b'"alice"', WS) is False
    assert w0.uid_disconnect(b'"alice"', AJAX) is False  # w0 lets go, w1 still holds it
    assert sup.uid_counts(b'"alice"') == (1, 0)
    assert w1.uid_disconnect(b'"alice"', WS) is True  # left the whole broker
    assert not sup.holds(b'"alice"') and sup.uid_counts(b'"alice"') == (0, 0)
    assert sup.registry_stats()["live"] == 0
    assert w1.uid_connect(b'"alice"', AJAX) is True  # and can come back
    w0.close()
    w1.close()


def test_connected_uids_views_by_transport(make):
    sup, name = make(2, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    w0.uid_connect(b"a", WS)
    w1.uid_connect(b"b", AJAX)
    w0.uid_connect(b"c", WS)
    w1.uid_connect(b"c", AJAX)
    assert sorted(sup.connected_uids(ANY)) == [b"a", b"b", b"c"]
    assert sorted(sup.connected_uids(WS)) == [b"a", b"c"]
    assert sorted(sup.connected_uids(AJAX)) == [b"b", b"c"]
    assert sorted(w0.connected_uids()) == [b"a", b"b", b"c"]


def test_every_change_to_who_holds_a_uid_bumps_the_change_counter(make):
    sup, name = make(2, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    seen = [sup.changes()]
    for step in (lambda: w0.uid_connect(b"a", WS),  # new uid
                 lambda: w1.uid_connect(b"a", AJAX),  # another worker joins it
                 lambda: w1.uid_connect(b"a", WS),  # one more connection of a holder
                 lambda: w1.uid_disconnect(b"a", WS),  # one fewer, still held
                 lambda: w0.uid_disconnect(b"a", WS),  # a holder lets go
                 lambda: sup.reclaim_worker(1, force=True)):  # a dead worker's share goes
        step()
        seen.append(w0.changes())
    assert seen == sorted(set(seen)), seen  # strictly increasing
    assert sup.connected_uids() == [] and sup.changes() == seen[-1]  # reading changes nothing
    w0.close()
    w1.close()


def test_disconnect_without_connection_is_an_error(make):
    _sup, name = make(2, uid_slots=64)
    w0 = SharedState.attach(name, 0)
    with pytest.raises(ValueError, match="not connected"):
        w0.uid_disconnect(b"x", WS)
    w0.uid_connect(b"x", WS)
    with pytest.raises(ValueError, match="no ajax connection"):
        w0.uid_disconnect(b"x", AJAX)
    with pytest.raises(ValueError, match="transport"):
        w0.uid_connect(b"x", 7)


def test_key_length_limit_and_type(make):
    sup, name = make(1, uid_slots=64, max_key=40)
    w0 = SharedState.attach(name, 0)
    assert w0.uid_connect(b"k" * 40, WS) is True
    assert sup.holds(b"k" * 40)
    with pytest.raises(ValueError, match="max_key=40"):
        w0.uid_connect(b"k" * 41, WS)
    with pytest.raises(TypeError):
        w0.uid_connect("text", WS)  # type: ignore[arg-type]
    assert w0.uid_connect(b"", WS) is True  # the empty key is a key like any other


def test_observer_and_supervisor_cannot_connect(make):
    sup, name = make(1, uid_slots=64)
    obs = SharedState.attach(name, None)
    for view in (sup, obs):
        with pytest.raises(ValueError, match="only an attached worker"):
            view.uid_connect(b"u", WS)
    with pytest.raises(ValueError, match="observer cannot publish"):
        obs.publish(0, KIND_PUSH, b"", b"x")


def test_capacity_refusal_is_counted_and_tombstones_are_reused(make):
    sup, name = make(1, uid_slots=16)
    w0 = SharedState.attach(name, 0)
    assert sup.max_live == 12
    for i in range(12):
        assert w0.uid_connect(b"u%d" % i, WS)
    with pytest.raises(RegistryFull):
        w0.uid_connect(b"one-too-many", WS)
    assert sup.registry_stats()["refusals"] == 1
    assert w0.uid_connect(b"u3", AJAX) is False  # existing uids still join
    for i in range(12):
        w0.uid_disconnect(b"u%d" % i, WS)
    w0.uid_disconnect(b"u3", AJAX)
    assert sup.registry_stats()["live"] == 0
    for i in range(12):  # a fresh set fits again: tombstones were reused
        assert w0.uid_connect(b"v%d" % i, WS)
    assert sorted(sup.connected_uids()) == sorted(b"v%d" % i for i in range(12))


def test_churn_through_a_small_table(make):
    sup, name = make(2, uid_slots=16)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    rng = random.Random(7)
    held: dict[bytes, list[int]] = {}
    for step in range(4000):
        key = b"uid-%d" % rng.randrange(40)
        w = rng.randrange(2)
        view = (w0, w1)[w]
        counts = held.setdefault(key, [0, 0])
        if counts[w] and rng.random() < 0.5:
            before = sum(counts)
            counts[w] -= 1
            assert view.uid_disconnect(key, WS) == (before == 1), step
        elif sum(1 for c in held.values() if sum(c)) < sup.max_live or sum(counts):
            before = sum(counts)
            counts[w] += 1
            assert view.uid_connect(key, WS) == (before == 0), step
    expect = sorted(k for k, c in held.items() if sum(c))
    assert sorted(sup.connected_uids()) == expect
    for k in expect:
        assert sup.uid_counts(k) == (sum(held[k]), 0)
    assert sup.registry_stats()["live"] == len(expect)


# ---- registry: contention between processes -------------------------------------------------------


def _same_moment(name, index, rounds, barrier, out):
    st_ = SharedState.attach(name, index)
    opens = closes = 0
    for r in range(rounds):
        key = b"round-%d" % r
        barrier.wait(TIMEOUT)
        opens += st_.uid_connect(key, WS)
        barrier.wait(TIMEOUT)
        closes += st_.uid_disconnect(key, WS)
    out.put((index, opens, closes))
    st_.close()


def test_simultaneous_connects_give_exactly_one_open_and_one_close(make):
    nproc, rounds = 4, 400
    _sup, name = make(nproc, uid_slots=512)
    barrier, out = CTX.Barrier(nproc), CTX.Queue()
    procs = [CTX.Process(target=_same_moment, args=(name, i, rounds, barrier, out)) for i in range(nproc)]
    for p in procs:
        p.start()
    results = [out.get(timeout=TIMEOUT) for _ in procs]
    _join_all(procs)
    assert sum(r[1] for r in results) == rounds
    assert sum(r[2] for r in results) == rounds


def _hammer(name, index, ops, seed, barrier, out):
    st_ = SharedState.attach(name, index)
    rng = random.Random(seed)
    barrier.wait(TIMEOUT)
    local = [0] * 8
    opens = [0] * 8
    closes = [0] * 8
    for _ in range(ops):
        u = rng.randrange(8)
        key = b'"user-%d"' % u
        if local[u] and rng.random() < 0.55:
            local[u] -= 1
            closes[u] += st_.uid_disconnect(key, WS)
        else:
            local[u] += 1
            opens[u] += st_.uid_connect(key, WS)
            assert st_.holds(key)
    for u in range(8):
        while local[u]:
            local[u] -= 1
            closes[u] += st_.uid_disconnect(b'"user-%d"' % u, WS)
    out.put((opens, closes))
    st_.close()


def test_hammering_the_same_uids_keeps_opens_and_closes_paired(make):
    nproc = 3
    sup, name = make(nproc, uid_slots=64)
    out, barrier = CTX.Queue(), CTX.Barrier(nproc)
    procs = [CTX.Process(target=_hammer, args=(name, i, 30000, i, barrier, out)) for i in range(nproc)]
    for p in procs:
        p.start()
    results = [out.get(timeout=TIMEOUT) for _ in procs]
    _join_all(procs)
    for u in range(8):
        opens = sum(r[0][u] for r in results)
        closes = sum(r[1][u] for r in results)
        assert opens == closes >= 1, (u, opens, closes)
    assert sup.connected_uids() == []
    assert sup.registry_stats()["live"] == 0


# ---- registry: dead workers -----------------------------------------------------------------------


def test_reclaim_reports_only_uids_that_left_the_broker(make):
    sup, name = make(3, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    w1.uid_connect(b"only-on-1", WS)
    w1.uid_connect(b"only-on-1", AJAX)
    w1.uid_connect(b"shared", WS)
    w0.uid_connect(b"shared", AJAX)
    w0.uid_connect(b"only-on-0", WS)
    assert sup.reclaim_worker(1, force=True) == [b"only-on-1"]
    assert sup.uid_counts(b"shared") == (0, 1)
    assert sorted(sup.connected_uids()) == [b"only-on-0", b"shared"]
    assert sup.reclaim_worker(1, force=True) == []  # idempotent
    assert w0.uid_disconnect(b"shared", AJAX) is True
    with pytest.raises(ValueError, match="cannot reclaim itself"):
        w0.reclaim_worker(0)
    with pytest.raises(RuntimeError, match="still alive"):
        sup.reclaim_worker(0)  # pid recorded by attach is this (live) process


def test_join_dying_after_its_bit_is_repaired(make):
    sup, name = make(2, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    w0.uid_connect(b"victim", WS)
    w1._crash_after_step(1)  # holder bit set, column not yet written
    with pytest.raises(_SimulatedCrash):
        w1.uid_connect(b"victim", AJAX)
    assert sup.reclaim_worker(1, force=True) == []  # w0 still holds it
    assert sup.uid_counts(b"victim") == (1, 0)
    assert w0.uid_disconnect(b"victim", WS) is True  # and w1's stale bit does not keep it alive


def test_insert_dying_before_its_column_reports_a_close(make):
    sup, name = make(2, uid_slots=64)
    w1 = SharedState.attach(name, 1)
    w1._crash_after_step(2)  # slot LIVE with w1's bit; uid_connect never returned True
    with pytest.raises(_SimulatedCrash):
        w1.uid_connect(b"victim", WS)
    assert sup.holds(b"victim")
    # the reclaimer cannot tell "died before firing open" from "died after": it reports the close
    assert sup.reclaim_worker(1, force=True) == [b"victim"]
    assert not sup.holds(b"victim") and sup.registry_stats()["live"] == 0


def test_insert_dying_with_the_lock_held_is_repaired(make):
    sup, name = make(2, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    w1._crash_after_step(3)  # slot claimed, key written, not yet LIVE; insert lock held
    with pytest.raises(_SimulatedCrash):
        w1.uid_connect(b"victim", WS)
    assert not sup.holds(b"victim")
    assert sup.reclaim_worker(1, force=True) == []
    assert w0.uid_connect(b"victim", WS) is True  # lock released by reclaim; the claim is reused
    assert sup.registry_stats()["live"] == 1
    assert sup.registry_stats()["lock_steals"] == 0


def test_disconnect_dying_between_column_and_bit_is_repaired(make):
    sup, name = make(2, uid_slots=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    w1.uid_connect(b"solo", WS)
    w1._crash_after_step(1)
    with pytest.raises(_SimulatedCrash):
        w1.uid_disconnect(b"solo", WS)
    assert sup.holds(b"solo")  # bit still set: the close has not been fired
    assert sup.reclaim_worker(1, force=True) == [b"solo"]
    assert not sup.holds(b"solo")
    assert w0.uid_connect(b"solo", WS) is True


def _connect_then_sleep(name, index, keys, ready):
    st_ = SharedState.attach(name, index)
    for k in keys:
        st_.uid_connect(k, WS)
    ready.set()
    time.sleep(TIMEOUT)


def test_sigkilled_worker_is_reclaimed(make):
    sup, name = make(2, uid_slots=64)
    w0 = SharedState.attach(name, 0)
    w0.uid_connect(b"kept", AJAX)
    ready = CTX.Event()
    p = CTX.Process(target=_connect_then_sleep, args=(name, 1, [b"kept", b"gone-1", b"gone-2"], ready))
    p.start()
    assert ready.wait(TIMEOUT)
    with pytest.raises(RuntimeError, match="still alive"):
        sup.reclaim_worker(1)
    with pytest.raises(RuntimeError, match="attached by live pid"):
        SharedState.attach(name, 1)
    p.kill()
    p.join(TIMEOUT)
    assert sorted(sup.reclaim_worker(1)) == [b"gone-1", b"gone-2"]
    assert sup.uid_counts(b"kept") == (0, 1)
    assert sup.stats(1)["pid"] == 0
    SharedState.attach(name, 1).close()  # the index is free again


def test_insert_lock_left_by_a_dead_process_is_stolen(make):
    sup, name = make(2, uid_slots=64)
    ready = CTX.Event()

    p = CTX.Process(target=_crash_holding_lock, args=(name, ready))
    p.start()
    assert ready.wait(TIMEOUT)
    p.kill()
    p.join(TIMEOUT)
    w0 = SharedState.attach(name, 0)
    assert w0.uid_connect(b"new", WS) is True  # would spin forever if the lock stayed held
    assert sup.registry_stats()["lock_steals"] == 1


def _crash_holding_lock(name, ready):
    st_ = SharedState.attach(name, 1)
    st_._crash_after_step(3)
    with contextlib.suppress(_SimulatedCrash):
        st_.uid_connect(b"half", WS)
    ready.set()
    time.sleep(TIMEOUT)


# ---- rings ----------------------------------------------------------------------------------------


def test_fifo_per_producer_kinds_keys_payloads(make):
    sup, name = make(3, ring_bytes=1 << 16)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    sent = []
    for i in range(50):
        assert w1.publish(0, KIND_PUSH, b"uid-%d" % i, b"batch-%d" % i)
        sent.append((KIND_PUSH, b"uid-%d" % i, b"batch-%d" % i))
    assert sup.publish(0, KIND_CONTROL, b"", bytearray(b"ctl"))
    assert w0.publish(0, KIND_BROADCAST, memoryview(b"k"), b"")  # to oneself works too
    got = w0.drain(1000)
    assert [m for m in got if m[2].startswith(b"batch")] == sent
    assert (KIND_CONTROL, b"", b"ctl") in got and (KIND_BROADCAST, b"k", b"") in got
    assert w0.drain() == []
    s = sup.stats(0)
    assert (s["received"], s["consumed"], s["dropped"], s["pending_bytes"]) == (52, 52, 0, 0)
    assert sup.stats(1)["published"] == 50


def test_drain_respects_max_messages(make):
    _sup, name = make(2, ring_bytes=1 << 16)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    for i in range(10):
        w1.publish(0, KIND_PUSH, b"", b"%d" % i)
    first = w0.drain(4)
    rest = w0.drain(100)
    assert [m[2] for m in first + rest] == [b"%d" % i for i in range(10)]
    with pytest.raises(ValueError):
        w0.drain(0)


def test_wrap_around_keeps_content(make):
    _sup, name = make(2, ring_bytes=4096)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    rng = random.Random(3)
    sent, got = [], []
    for i in range(3000):
        payload = bytes([i % 256]) * rng.randrange(0, 700)
        if w1.publish(0, i % 5, b"k%d" % i, payload):
            sent.append((i % 5, b"k%d" % i, payload))
        if rng.random() < 0.4:
            got += w0.drain(rng.randrange(1, 8))
    got += w0.drain(10_000)
    assert got == sent
    assert len(sent) > 1000


def test_full_lane_drops_newest_and_counts(make):
    sup, name = make(2, ring_bytes=4096)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    accepted = refused = 0
    for i in range(100):
        if w1.publish(0, KIND_PUSH, b"", struct.pack("<I", i) * 25):
            accepted += 1
        else:
            refused += 1
    assert refused > 0 and accepted > 0
    assert sup.stats(0)["dropped"] == refused == sup.stats(1)["dropped_out"]
    got = w0.drain(1000)
    assert [struct.unpack_from("<I", m[2])[0] for m in got] == list(range(accepted))  # the oldest kept
    assert w1.publish(0, KIND_PUSH, b"", b"room again")


def test_payload_size_limit(make):
    sup, name = make(2, ring_bytes=8192, max_key=64)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    assert sup.max_payload == 8192 // 2 - 16 - 64
    big = os.urandom(sup.max_payload)
    for _ in range(5):  # always fits, wherever the lane's tail is
        assert w1.publish(0, KIND_PUSH, b"k" * 64, big)
        assert w0.drain() == [(KIND_PUSH, b"k" * 64, big)]
    with pytest.raises(ValueError, match="too large"):
        w1.publish(0, KIND_PUSH, b"", big + b"x")
    with pytest.raises(ValueError, match="too large"):
        w1.publish(0, KIND_PUSH, b"k" * 65, b"")
    with pytest.raises(ValueError, match="kind"):
        w1.publish(0, 0xFFFF, b"", b"")
    with pytest.raises(ValueError, match="out of range"):
        w1.publish(2, KIND_PUSH, b"", b"")


def test_publish_all_reaches_every_other_worker(make):
    sup, name = make(3, ring_bytes=4096)
    ws = [SharedState.attach(name, i) for i in range(3)]
    assert ws[1].publish_all(KIND_BROADCAST, b"", b"hi") == 2
    assert [len(w.drain()) for w in ws] == [1, 0, 1]
    assert sup.publish_all(KIND_CONTROL, b"", b"all") == 3
    assert all(w.drain() == [(KIND_CONTROL, b"", b"all")] for w in ws)


def _producer(name, index, n, out):
    st_ = SharedState.attach(name, index)
    sent = 0
    deadline = time.monotonic() + TIMEOUT
    while sent < n and time.monotonic() < deadline:
        if st_.publish(0, KIND_PUSH, b"p%d" % index, struct.pack("<II", index, sent) + b"x" * (sent % 300)):
            sent += 1
    out.put(sent)
    st_.close()


def test_many_producer_processes_keep_per_producer_order(make):
    nprod, n = 3, 3000
    sup, name = make(nprod + 1, ring_bytes=8192)
    w0 = SharedState.attach(name, 0)
    out = CTX.Queue()
    procs = [CTX.Process(target=_producer, args=(name, i, n, out)) for i in range(1, nprod + 1)]
    for p in procs:
        p.start()
    nxt = dict.fromkeys(range(1, nprod + 1), 0)
    deadline = time.monotonic() + TIMEOUT
    while sum(nxt.values()) < nprod * n and time.monotonic() < deadline:
        for _kind, key, payload in w0.drain(64):
            idx, seq = struct.unpack_from("<II", payload)
            assert key == b"p%d" % idx and seq == nxt[idx] and payload[8:] == b"x" * (seq % 300)
            nxt[idx] += 1
    assert [out.get(timeout=TIMEOUT) for _ in procs] == [n] * nprod
    _join_all(procs)
    assert nxt == dict.fromkeys(range(1, nprod + 1), n)
    assert sup.stats(0)["consumed"] == nprod * n


# ---- wake-ups -------------------------------------------------------------------------------------


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def test_wakeup_fd_signals_a_parked_consumer_once(make):
    sup, name = make(2, ring_bytes=1 << 16)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    fd = w0.wakeup_fd()
    assert w0.wakeup_fd(0) == fd
    with pytest.raises(ValueError):
        w0.wakeup_fd(1)
    assert w0.drain() == []  # parks
    assert not _readable(fd, 0.01)
    for i in range(20):
        w1.publish(0, KIND_PUSH, b"", b"%d" % i)
    assert _readable(fd, 2.0)
    assert w0.clear_wakeup() == 1  # coalesced: 20 publishes, one byte
    assert sup.stats(0)["wakes"] == 1
    assert len(w0.drain(5)) == 5  # not empty after this: no wake armed
    w1.publish(0, KIND_PUSH, b"", b"more")
    assert not _readable(fd, 0.01)
    assert len(w0.drain()) == 16  # empties and parks again
    sup.publish(0, KIND_CONTROL, b"", b"from the supervisor")
    assert _readable(fd, 2.0)


def _late_publisher(name, delay):
    st_ = SharedState.attach(name, 1)
    time.sleep(delay)
    st_.publish(0, KIND_PUSH, b"", b"wake up")
    st_.close()


def test_wakeup_from_another_process(make):
    _sup, name = make(2)
    w0 = SharedState.attach(name, 0)
    fd = w0.wakeup_fd()
    assert w0.drain() == []
    p = CTX.Process(target=_late_publisher, args=(name, 0.05))
    p.start()
    assert _readable(fd, 5.0)
    w0.clear_wakeup()
    assert w0.drain() == [(KIND_PUSH, b"", b"wake up")]
    _join_all([p])


# ---- a producer killed between reserve and commit -------------------------------------------------


def _reserve_and_hang(name, ready):
    st_ = SharedState.attach(name, 1)
    assert st_.publish(0, KIND_PUSH, b"", b"committed before the crash")
    assert st_._reserve_only(0, KIND_PUSH, b"", b"never committed")
    ready.set()
    time.sleep(TIMEOUT)


def test_producer_killed_mid_publish_does_not_wedge_the_inbox(make):
    sup, name = make(3, ring_bytes=4096)
    w0 = SharedState.attach(name, 0)
    ready = CTX.Event()
    p = CTX.Process(target=_reserve_and_hang, args=(name, ready))
    p.start()
    assert ready.wait(TIMEOUT)
    os.kill(p.pid, signal.SIGKILL)
    p.join(TIMEOUT)
    # before any reclaim the other producers flow, and the half-written record is invisible
    w2 = SharedState.attach(name, 2)
    assert w2.publish(0, KIND_PUSH, b"", b"from 2")
    assert sorted(m[2] for m in w0.drain()) == [b"committed before the crash", b"from 2"]
    sup.reclaim_worker(1)
    assert sup.stats(1)["abandoned"] == 1
    restarted = SharedState.attach(name, 1)
    for i in range(200):  # the lane wraps several times over where the dead write was
        assert restarted.publish(0, KIND_PUSH, b"", b"after %d" % i + b"." * 100)
        assert w0.drain() == [(KIND_PUSH, b"", b"after %d" % i + b"." * 100)]


def test_reclaim_discards_the_dead_workers_inbox(make):
    sup, name = make(2, ring_bytes=4096)
    w0 = SharedState.attach(name, 0)
    for i in range(5):
        w0.publish(1, KIND_PUSH, b"", b"%d" % i)
    sup.reclaim_worker(1)  # never attached: nothing to check for liveness
    assert sup.stats(1)["discarded"] == 5
    w1 = SharedState.attach(name, 1)
    assert w1.drain() == []


# ---- attach validation ----------------------------------------------------------------------------


def test_attach_validation(make, tmp_path):
    sup, name = make(2, uid_slots=64, ring_bytes=4096)
    with pytest.raises(FileNotFoundError, match="no csente shared-memory segment"):
        SharedState.attach(_name(), 0)
    with pytest.raises(ValueError, match="invalid shared-memory name"):
        SharedState.attach("../etc/passwd", 0)
    with pytest.raises(ValueError, match="out of range"):
        SharedState.attach(name, 2)
    with pytest.raises(FileExistsError):
        SharedState.create(name, workers=1)
    with open(sup.path, "r+b") as f:
        good = f.read(16)
        f.seek(0)
        f.write(b"NOTMAGIC")
        f.flush()
        with pytest.raises(LayoutError, match="magic"):
            SharedState.attach(name, 0)
        f.seek(0)
        f.write(good[:8] + struct.pack("<Q", 99))
        f.flush()
        with pytest.raises(LayoutError, match="version 99"):
            SharedState.attach(name, 0)
        f.seek(0)
        f.write(good)
        f.flush()
    os.truncate(sup.path, os.path.getsize(sup.path) - 4096)
    with pytest.raises(LayoutError, match="inconsistent"):
        SharedState.attach(name, 0)
    small = tmp_path / "tiny"
    small.write_bytes(b"x" * 100)
    with pytest.raises(LayoutError, match="too small"):
        SharedState.attach("tiny", 0, directory=str(tmp_path))


def test_create_validates_geometry(tmp_path):
    for kw in ({"workers": 0}, {"workers": 33}, {"workers": 1, "uid_slots": 100},
               {"workers": 1, "ring_bytes": 1000}, {"workers": 1, "max_key": 0}):
        with pytest.raises(ValueError):
            SharedState.create("g", directory=str(tmp_path), **kw)
    assert list(tmp_path.iterdir()) == []


def test_closed_state_refuses(make):
    _sup, name = make(1)
    w0 = SharedState.attach(name, 0)
    w0.close()
    w0.close()
    assert w0.closed
    with pytest.raises(ValueError, match="closed"):
        w0.drain()
    with SharedState.attach(name, 0) as again:  # close() gave the index back
        assert again.worker_index == 0


# ---- property test --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("pub"), st.integers(0, 2), st.integers(0, 1100)),
                          st.tuples(st.just("drain"), st.integers(1, 9), st.just(0))), max_size=120))
def test_ring_property_random_publish_and_drain(ops):
    name = _name()
    sup = SharedState.create(name, workers=2, uid_slots=8, ring_bytes=4096)
    try:
        w0 = SharedState.attach(name, 0)
        producers = [SharedState.attach(name, 1), sup, w0]
        model: dict[int, deque] = {0: deque(), 1: deque(), 2: deque()}
        seq = 0
        for op, a, b in ops:
            if op == "pub":
                msg = (seq % 7, b"%d" % seq, bytes([seq % 251]) * b)
                seq += 1
                empty = all(not q for q in model.values())
                ok = producers[a].publish(0, *msg)
                assert ok or not empty  # an empty inbox always takes a message of allowed size
                if ok:
                    model[a].append(msg)
            else:
                for m in w0.drain(a):
                    src = next(p for p, q in model.items() if q and q[0] == m)
                    model[src].popleft()
        rest = w0.drain(10_000)
        for m in rest:
            src = next(p for p, q in model.items() if q and q[0] == m)
            model[src].popleft()
        assert all(not q for q in model.values())
    finally:
        sup.unlink()
        sup.close()
