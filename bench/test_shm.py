"""Shared-memory micro-benchmarks: ring publish+drain per message, uid registry connect/disconnect per op.

Both ends live in this process (two attached views), so the figures are the cost of the operations
themselves, with hot caches; cross-core cache-line transfers add to them in the real broker.

Run: python3 -m pytest bench/test_shm.py --benchmark-json=bench/results/shm.json
Per-message figures for the batched cases are the median divided by BATCH (see extra_info).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from csente.shm import KIND_PUSH, WS, SharedState

BATCH = 64
PAYLOADS = {"100B": 100, "4KB": 4096}


@pytest.fixture
def views() -> Iterator[tuple[SharedState, SharedState, SharedState]]:
    name = f"csente-bench-{uuid.uuid4().hex[:12]}"
    sup = SharedState.create(name, workers=2, uid_slots=1 << 16, ring_bytes=1 << 20)
    w0, w1 = SharedState.attach(name, 0), SharedState.attach(name, 1)
    try:
        yield sup, w0, w1
    finally:
        w0.close()
        w1.close()
        sup.unlink()
        sup.close()


@pytest.mark.parametrize("size", PAYLOADS)
def test_publish_drain_one(benchmark: Any, views: Any, size: str) -> None:
    _sup, w0, w1 = views
    payload, key = b"x" * PAYLOADS[size], b'"user-12345"'
    publish, drain = w1.publish, w0.drain

    def one() -> None:
        publish(0, KIND_PUSH, key, payload)
        drain(1)

    benchmark.group = "ring publish+drain (1 message per drain)"
    benchmark.extra_info["messages"] = 1
    benchmark(one)


@pytest.mark.parametrize("size", PAYLOADS)
def test_publish_drain_batch(benchmark: Any, views: Any, size: str) -> None:
    _sup, w0, w1 = views
    payload, key = b"x" * PAYLOADS[size], b'"user-12345"'
    publish, drain = w1.publish, w0.drain

    def batch() -> None:
        for _ in range(BATCH):
            publish(0, KIND_PUSH, key, payload)
        drain(BATCH)

    benchmark.group = f"ring publish+drain ({BATCH} messages per drain)"
    benchmark.extra_info["messages"] = BATCH
    benchmark(batch)


def _bench_connect_disconnect(benchmark: Any, worker: Any, key: bytes) -> None:
    """Time one uid_connect + uid_disconnect of ``key`` on ``worker`` (bound methods, no lookups timed)."""
    connect, disconnect = worker.uid_connect, worker.uid_disconnect

    def pair() -> None:
        connect(key, WS)
        disconnect(key, WS)

    benchmark.group = "registry connect+disconnect (2 ops)"
    benchmark.extra_info["ops"] = 2
    benchmark(pair)


def test_registry_join_leave(benchmark: Any, views: Any) -> None:
    """The common case: the uid is held elsewhere already; connect and disconnect are lock-free."""
    _sup, w0, w1 = views
    w0.uid_connect(b'"user-1"', WS)
    _bench_connect_disconnect(benchmark, w1, b'"user-1"')


def test_registry_insert_tombstone(benchmark: Any, views: Any) -> None:
    """A uid new to the broker: insert under the insert lock, then tombstone on the way out."""
    _sup, w0, _w1 = views
    _bench_connect_disconnect(benchmark, w0, b'"user-2"')


def test_registry_local_count(benchmark: Any, views: Any) -> None:
    """A second connection of a uid this worker holds: one column store each way."""
    _sup, w0, _w1 = views
    w0.uid_connect(b'"user-3"', WS)
    _bench_connect_disconnect(benchmark, w0, b'"user-3"')
