"""A real Prometheus scraping a real 2-worker broker: every dashboard panel has data, and the counters add up.

The broker runs ``tests.sente.cluster.registry_app`` (the reference app; CSRF off). Prometheus (Debian package
``prometheus``, installed by ``.ci/run``) runs on a free port with a temporary TSDB, scraping ``/metrics`` every
second. The test opens WebSockets until both workers hold some, makes the app broadcast P events to every uid,
asks E echoes and sends 3 requests without a client-id; then, through Prometheus' HTTP API:

* ``deliveries = P × connections``, ``pushed = P``, ws handshakes, rejections by reason, gauges;
* every PromQL query of ``grafana/dashboards/sente.json`` returns at least one series;
* after a worker is SIGKILLed and restarted, ``sente_worker_restarts_total`` shows it and no counter went back;
* ``sente dashboard-snapshot`` renders the dashboard from this Prometheus to a PNG.

Every wait is bounded; the broker, its workers and Prometheus are killed at the end whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sente.edn import Keyword
from sente.snapshot import expand, load_dashboard, panel_queries, query, render
from tests.sente.cluster.test_supervisor import (
    EDN,
    IO_TIMEOUT,
    Cluster,
    Conn,
    client_frame,
    cluster,
    get_once,
    wait_ready,
    whoami,
    ws_client,
)
from tests.sente.test_serve import free_port

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus (Debian package prometheus) not installed; .ci/run installs it")

PUSHES = 10
ECHOES = 10
NO_CLIENT_ID = 3
SETTLE_TIMEOUT = 20.0
RATE = "30s"


@contextlib.contextmanager
def prometheus(tmp: Path, target_port: int) -> Iterator[str]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: sente\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    log = (tmp / "prometheus.log").open("w+")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            assert proc.poll() is None, f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, "prometheus not ready"
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(IO_TIMEOUT)
        log.close()


def value(url: str, expr: str) -> float | None:
    result = query(url, expr)
    return float(result[0]["value"][1]) if result else None


def settle(url: str, expr: str, ok: Callable[[float | None], bool]) -> float | None:
    """Poll an instant query until ``ok(value)`` (scrapes and worker publishes run every second)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        v = value(url, expr)
        if ok(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.25)


async def broadcasts_seen(conn: Conn, want: int) -> int:
    seen = 0
    deadline = time.monotonic() + IO_TIMEOUT
    while seen < want and time.monotonic() < deadline:
        opcode, payload = await conn.frame(max(0.01, deadline - time.monotonic()))
        if opcode != 0x1:
            continue
        batch = EDN.unpack_envelope(payload.decode()).payload
        if isinstance(batch, list) and batch and isinstance(batch[0], list):
            seen += sum(1 for ev in batch if ev and ev[0] == Keyword("test/broadcast"))
    return seen


async def load(c: Cluster) -> tuple[list[Conn], dict[int, int]]:
    """Connections on both workers, P broadcasts to all, E echoes, 3 refusals; (connections, {worker: pid})."""
    conns: list[Conn] = []
    per: dict[int, int] = {}
    pids: dict[int, int] = {}
    for n in range(40):
        conn = await ws_client(c.port, f"m{n}")
        conns.append(conn)
        index, pid, _ = await whoami(conn)
        per[index] = per.get(index, 0) + 1
        pids[index] = pid
        if len(conns) >= 6 and min(per.get(0, 0), per.get(1, 0)) >= 2:
            break
    assert min(per.get(0, 0), per.get(1, 0)) >= 2, per
    sender = conns[0]
    for i in range(PUSHES):
        sender.writer.write(client_frame(0x1, str(EDN.pack_envelope([Keyword("test/broadcast-all"), i])).encode()))
    seen = await asyncio.gather(*(broadcasts_seen(conn, PUSHES) for conn in conns))
    assert seen == [PUSHES] * len(conns)
    for i in range(ECHOES):
        assert await conns[i % len(conns)].call([Keyword("test/echo"), i]) == i
    for _ in range(NO_CLIENT_ID):
        status, _, _ = await get_once(c.port, "/chsk?uid=nobody")
        assert status == 500
    return conns, pids


def test_prometheus_sees_every_panel_and_counters_that_add_up(tmp_path: Path) -> None:
    with cluster("tests.sente.cluster.registry_app:app") as c, prometheus(tmp_path, c.port) as url:
        assert settle(url, 'up{job="sente"}', lambda v: v == 1.0) == 1.0
        loop = asyncio.new_event_loop()  # the clients' loop: they stay connected through the checks
        conns, pids = loop.run_until_complete(load(c))
        try:
            _check_counters(url, len(conns))
            _check_panels(url)
            _check_restart(c, url, pids, PUSHES * len(conns))
            png = render(url, tmp_path / "dashboard.png", minutes=1)
            assert png.stat().st_size > 10_000
            if os.environ.get("WRITE_DASHBOARD_PNG"):  # how docs/dashboard.png is made
                shutil.copy(png, os.environ["WRITE_DASHBOARD_PNG"])
        finally:
            for conn in conns:
                conn.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()


def _check_counters(url: str, n: int) -> None:
    deliveries = settle(url, "sum(sente_deliveries_total)", lambda v: v == PUSHES * n)
    assert deliveries == PUSHES * n, f"{deliveries} deliveries for {PUSHES} pushes x {n} connections"
    assert value(url, "sum(sente_events_pushed_total)") == PUSHES
    got = settle(url, 'sum(sente_rejections_total{reason="no_client_id"})', lambda v: v == NO_CLIENT_ID)
    assert got == NO_CLIENT_ID
    assert value(url, 'sum(sente_handshakes_total{transport="ajax",result="rejected"})') == NO_CLIENT_ID
    assert value(url, 'sum(sente_handshakes_total{transport="ws",result="ok"})') == n
    assert value(url, 'sum(sente_connections{transport="ws"})') == n
    assert value(url, "sum(sente_connected_uids)") == n
    assert value(url, "sum(sente_reply_latency_seconds_count)") >= ECHOES  # type: ignore[operator]
    received = value(url, "sum(sente_events_received_total)")
    assert received is not None and received >= PUSHES + ECHOES + n  # + one whoami per connection
    batched = value(url, "sum(sente_batch_events_sum)")  # each worker packs a push once per batch of its own
    assert batched is not None and PUSHES <= batched <= 2 * PUSHES
    assert value(url, "sum(sente_workers_up)") == 2
    assert value(url, "count(sente_worker_resident_memory_bytes > 1e6)") == 2


def _check_panels(url: str) -> None:
    dashboard = load_dashboard()
    assert "__inputs" not in dashboard
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    empty: list[str] = []
    count = 0
    for title, _, targets in panel_queries(dashboard):
        for expr, _ in targets:
            count += 1
            if not query(url, expand(expr, RATE, "sente")):
                empty.append(f"{title}: {expr}")
    assert count >= 12 and not empty, empty


def _check_restart(c: Cluster, url: str, pids: dict[int, int], deliveries: float) -> None:
    os.kill(pids[1], signal.SIGKILL)
    asyncio.run(wait_ready(c.port, {1}, timeout=10, not_pid=pids[1]))
    c.note_workers()
    assert settle(url, 'sente_worker_restarts_total{worker="1"}', lambda v: v == 1.0) == 1.0
    restarted: Any = settle(url, 'sum(sente_workers_up)', lambda v: v == 2.0)
    assert restarted == 2.0
    # the new worker 1 continued its slot: the broker-wide counters did not go back
    assert value(url, "sum(sente_deliveries_total)") == deliveries
    assert value(url, "resets(sum(sente_deliveries_total)[1m:1s])") in (None, 0.0)
    assert value(url, "sum(sente_events_pushed_total)") == PUSHES
