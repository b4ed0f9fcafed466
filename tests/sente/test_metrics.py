"""sente.metrics: what the hot paths count, the shared-memory slots across a restart, and a clean exposition.

``promtool check metrics`` (Debian package ``prometheus``, installed by ``.ci/run``) lints the exposition of a
process that counted a bit of everything.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from sente import metrics
from sente.cluster.redis import RedisStats
from sente.edn import Keyword
from sente.packers import EdnPacker
from sente.protocol.config import ServerConfig
from sente.protocol.requests import Request
from sente.protocol.server import Send, ServerCore

EDN = EdnPacker()


def ws_request(uid: str, client_id: str, **params: str) -> Request:
    return Request("GET", "/chsk", query=[("client-id", client_id), ("uid", uid), *params.items()])


@pytest.fixture
def core() -> ServerCore:
    return ServerCore(EDN, ServerConfig(user_id_fn=lambda r: r.param("uid"), csrf_token_fn=None,
                                        send_buf_ms_ws=10))


@pytest.fixture
def shm_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield d


def snapshot() -> dict[str, float]:
    c = metrics.counters()
    return {name: getattr(c, name) for name in metrics.Counters.COUNTERS} | {
        "batches": sum(c.batch_events.counts), "batch_sum": c.batch_events.sum,
        "flushes": sum(c.flush_latency.counts), "flush_sum": c.flush_latency.sum,
    }


def delta(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in snapshot().items() if v != before[k]}


def test_a_broadcast_counts_events_times_connections_once_per_batch(core: ServerCore) -> None:
    for i, uid in enumerate(["a", "a", "b"]):  # uid a has two tabs
        core.ws_open(("h", i), ws_request(uid, f"tab{i}"), 0.0)
    core.take_actions()
    before = snapshot()
    for n in range(3):
        core.broadcast([Keyword("t/ev"), n], 100.0)
    core.tick(110.0)
    sends = [a for a in core.take_actions() if isinstance(a, Send) and a.push]
    assert sum(len(s.handles) for s in sends) == 3
    d = delta(before)
    assert d["deliveries"] == 3 * 3  # 3 events x 3 connections
    assert d["batches"] == 1 and d["batch_sum"] == 3  # one packed batch of 3 events
    assert d["flushes"] == 1 and d["flush_sum"] == pytest.approx(0.010)  # first push at 100 ms, written at 110


def test_a_batch_from_another_process_counts_its_events(core: ServerCore) -> None:
    core.ws_open("h", ws_request("a", "tab"), 0.0)
    core.take_actions()
    before = snapshot()
    data = EDN.pack_batch([EDN.encode_event([Keyword("t/ev"), i]) for i in range(4)])
    core.deliver_remote("ws", "a", data, 5.0)
    assert delta(before)["deliveries"] == 4


def test_refusals_count_by_reason_and_as_rejected_handshakes() -> None:
    config = ServerConfig(user_id_fn=lambda r: r.param("uid"), csrf_token_fn=lambda r: "secret",
                          authorized_fn=lambda r: r.param("uid") != "mallory")
    core = ServerCore(EDN, config)
    before = snapshot()
    core.ajax_get(1, Request("GET", "/chsk", query=[("uid", "a")]), 0.0)  # no client-id
    core.ajax_get(2, ws_request("a", "c1"), 0.0)  # no token
    core.ajax_get(3, ws_request("mallory", "c2", **{"csrf-token": "secret"}), 0.0)
    core.ajax_get(4, ws_request("a", "c3", **{"csrf-token": "secret"}), 0.0)  # a handshake
    core.ajax_post(5, Request("POST", "/chsk", form=[("client-id", "c3"), ("ppstr", "[[:x/y] nil")]), 0.0)
    d = delta(before)
    assert d["rejected_no_client_id"] == 1 and d["rejected_unauthorized"] == 1
    assert d["rejected_csrf"] == 2  # the POST has no token either (not a handshake)
    assert d["handshakes_ajax_rejected"] == 3 and d["handshakes_ajax"] == 1


def test_an_unreadable_frame_is_a_decode_error(core: ServerCore) -> None:
    core.ws_open("h", ws_request("a", "tab"), 0.0)
    before = snapshot()
    core.ws_message("h", "[[:x/y {", 1.0)
    assert delta(before) == {"decode_errors": 1}


def test_histogram_buckets_start_at_100_microseconds() -> None:
    h = metrics.Histogram(metrics.LATENCY_BUCKETS)
    for v in (0.00005, 0.0001, 0.0003, 20.0):
        h.observe(v)
    assert metrics.LATENCY_BUCKETS[0] == 0.0001
    assert h.counts[0] == 2 and h.counts[2] == 1 and h.counts[-1] == 1  # le=0.0001 holds 100 µs itself


def test_a_restarted_worker_continues_its_slot(shm_dir: str) -> None:
    block = metrics.MetricsBlock.create("sente-1-00000000", 2, shm_dir)
    try:
        first = metrics.Counters()
        pub = metrics.Publisher(block, 1, first)  # a fresh slot: starts from zero
        first.deliveries, first.events_pushed = 40, 4
        first.flush_latency.observe(0.002)
        pub.publish()
        pub.stop()
        again = metrics.Counters()  # a new process for index 1: loads the slot, counts on from there
        pub2 = metrics.Publisher(block, 1, again)
        assert again.deliveries == 40 and again.events_pushed == 4 and sum(again.flush_latency.counts) == 1
        again.deliveries += 2
        pub2.stop()
        assert block.read(1)[len(metrics.GAUGES) + metrics.Counters.COUNTERS.index("deliveries")] == 42
        assert block.read(0) == [0.0] * metrics.SLOT_WIDTH
    finally:
        block.close()


def test_a_slot_round_trips_every_cell() -> None:
    c = metrics.Counters()
    for i, name in enumerate(metrics.Counters.COUNTERS):
        setattr(c, name, i + 1)
    c.reply_latency.observe(0.3)
    c.batch_events.observe(7)
    d = metrics.Counters()
    d.load(c.values())
    assert d.values() == c.values() and len(c.values()) == metrics.Counters.width()


def test_the_exposition_names_every_metric_of_the_issue(core: ServerCore) -> None:
    text = metrics.exposition(metrics.registry_for(metrics.SenteCollector())).decode()
    for name in ("sente_connections", "sente_connected_uids", "sente_handshakes_total", "sente_events_received_total",
                 "sente_events_pushed_total", "sente_deliveries_total", "sente_bytes_sent_total",
                 "sente_bytes_received_total", "sente_batch_events_bucket", "sente_flush_latency_seconds_bucket",
                 "sente_reply_latency_seconds_bucket", "sente_rejections_total", "sente_decode_errors_total",
                 "sente_slow_consumer_closes_total"):
        assert f"\n{name}" in text, name
    assert 'sente_flush_latency_seconds_bucket{le="0.0001"}' in text


class FakeLink:
    """What sente.metrics reads of a RedisLink: ``stats`` (plain ints) and ``active``."""

    def __init__(self) -> None:
        self.stats = RedisStats()
        self.active = False


def sample(text: str, series: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(series + " "))
    return float(line.split()[-1])


def test_the_redis_backplane_is_exported_from_its_link_stats(shm_dir: str) -> None:
    def exported() -> str:
        return metrics.exposition(metrics.registry_for(metrics.SenteCollector())).decode()

    text = exported()  # no link in this process: present, at zero
    assert sample(text, "sente_backplane_up") == 0
    before = {r: sample(text, f'sente_backplane_dropped_total{{reason="{r}"}}') for r in ("outage", "queue_full")}
    published = sample(text, "sente_backplane_published_total")
    link = FakeLink()
    link.stats.dropped_down = 3  # before it was tracked: not counted
    metrics.track_link(link)
    try:
        assert sample(exported(), "sente_backplane_up") == 0  # running, not up yet
        link.active = True
        link.stats.published, link.stats.received = 5, 7
        link.stats.dropped_down, link.stats.dropped_overflow = 4, 2
        text = exported()
        assert sample(text, "sente_backplane_up") == 1
        assert sample(text, "sente_backplane_published_total") == published + 5
        assert sample(text, 'sente_backplane_dropped_total{reason="outage"}') == before["outage"] + 1
        assert sample(text, 'sente_backplane_dropped_total{reason="queue_full"}') == before["queue_full"] + 2
        link.stats.published += 1
    finally:
        metrics.untrack_link(link)  # a stopped link: its last counts stay, it no longer counts as up or down
    text = exported()
    assert sample(text, "sente_backplane_up") == 0 and sample(text, "sente_backplane_published_total") == published + 6

    block = metrics.MetricsBlock.create("sente-1-00000001", 2, shm_dir)  # in a broker's slot, across a restart
    try:
        mine = metrics.Counters()
        pub = metrics.Publisher(block, 0, mine)
        link2 = FakeLink()
        metrics.track_link(link2)
        link2.active, link2.stats.received = True, 9
        pub.publish()
        assert block.read(0)[metrics.GAUGES.index("backplane_up")] == 1 and mine.backplane_received == 9
        metrics.untrack_link(link2)
        again = metrics.Counters()
        metrics.Publisher(block, 0, again).publish()  # the replacement worker, no link up yet
        assert again.backplane_received == 9 and block.read(0)[metrics.GAUGES.index("backplane_up")] == 0
    finally:
        block.close()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_promtool_accepts_the_exposition(core: ServerCore) -> None:
    core.ws_open("h", ws_request("a", "tab"), 0.0)
    core.broadcast([Keyword("t/ev"), 1], 0.0)
    core.tick(50.0)
    metrics.counters().reply_latency.observe(0.0004)
    text = metrics.exposition(metrics.registry_for(metrics.SenteCollector()))
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", "promtool has no lint remarks"
