"""``sente bench`` itself, in tiny bounded runs: 20 clients, a few events, burst and rate.

It checks the tool (servers started and killed, handshakes, sessions and CSRF against the reference app, the
publisher, counting, the report files), not the numbers: every event reached every client (0 lost), and the JSON
lines, the table and the chart were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sente.bench.loadgen import bucket, percentile
from sente.bench.servers import free_port


def test_fanout_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "sente", "bench", "--peers", "csente", "-n", "20", "--events", "50",
        "--rate", "2000", "--duration", "0.5", "--drain-s", "2", "--max-seconds", "14", "--quiet",
        "--out", str(tmp_path),
    ]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 15, "the smoke run must stay under 15 s"
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds == ["connect", "burst", "rate"], kinds
    assert records[0]["connected"] == 20 and records[0]["failed"] == 0
    for r in records[1:]:
        assert r["events"] == 50, r
        assert r["lost"] == 0 and r["duplicates"] == 0 and r["deliveries"] == 20 * 50, r
        assert r["server_cpu_s"] > 0 and r["p99_ms"] is not None
    table = (tmp_path / "table.md").read_text()
    assert "| csente | burst | 20 | 50 |" in table and "| csente | rate | 20 | 50 |" in table
    assert (tmp_path / "chart.png").stat().st_size > 1000
    assert "| csente | burst |" in done.stdout


def test_refuses_a_plan_past_the_bound(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "sente", "bench", "--duration", "100", "--max-seconds", "10", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "refusing to start" in done.stderr


def test_url_benchmarks_a_running_reference_app(tmp_path: Path) -> None:
    """--url: a server someone else started (here sente serve sente.testapp:app): session + CSRF, its broadcast."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sente", "serve", "sente.testapp:app", "--workers", "0", "--port", str(port),
         "--log-level", "warning"], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert server.stdout is not None and "sente: serving" in server.stdout.readline()
        cmd = [sys.executable, "-m", "sente", "bench", "--url", f"ws://127.0.0.1:{port}/chsk", "-n", "20",
               "--events", "5", "--rate", "400", "--duration", "0.5", "--drain-s", "2", "--max-seconds", "20",
               "--quiet", "--out", str(tmp_path)]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=40)
    finally:
        server.terminate()
        server.wait(10)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["connect", "burst", "rate"]
    assert records[0]["connected"] == 20 and records[0]["rss_kb_per_conn"] is None  # not our process to measure
    for r in records[1:]:
        assert r["lost"] == 0 and r["deliveries"] == 20 * r["events"], r
        assert r["server_cpu_s"] is None
    assert f"| ws://127.0.0.1:{port}/chsk | burst | 20 | 5 |" in done.stdout


def test_url_and_peers_exclude_each_other(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "sente", "bench", "--url", "ws://127.0.0.1:1/chsk", "--peers", "csente"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "give one of them" in done.stderr


def test_histogram_percentiles() -> None:
    assert [bucket(v) for v in (0, 5, 1023)] == [0, 5, 1023]
    assert bucket(123_456) <= 123_456 < bucket(123_456) * 1.001 + 1
    hist = {bucket(v): 1 for v in range(1, 1001)}  # 1..1000 µs
    assert percentile(hist, 0.5) == 0.5 and percentile(hist, 0.99) == 0.99 and percentile({}, 0.5) is None


def test_per_uid_push_peers_deliver_everything_and_are_compared_with_broadcast_all(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "sente", "bench", "--peers", "csente,csente-uids,csente-send", "-n", "10",
           "--events", "5", "--modes", "burst", "--drain-s", "2", "--max-seconds", "40", "--quiet",
           "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    bursts = {r["peer"]: r for r in records if r["kind"] == "burst"}
    assert set(bursts) == {"csente", "csente-uids", "csente-send"}
    assert all(r["lost"] == 0 and r["deliveries"] == 50 for r in bursts.values()), bursts
    for peer in ("csente-uids", "csente-send"):
        assert f"* {peer} burst against csente's broadcast(event): " in done.stdout, done.stdout


@pytest.mark.parametrize("packer", ["msgpack", "edn+gzip"])
def test_binary_and_gzip_packers_are_benchmarked_end_to_end(packer: str, tmp_path: Path) -> None:
    """The started server speaks --packer, and the clients read its binary (and gzipped) batches: 0 lost."""
    cmd = [sys.executable, "-m", "sente", "bench", "--peers", "csente", "--packer", packer, "-n", "10",
           "--events", "20", "--payload", "300", "--modes", "burst", "--drain-s", "2", "--max-seconds", "30",
           "--quiet", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    (burst,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()
                if '"burst"' in line]
    assert burst["lost"] == 0 and burst["deliveries"] == 200, burst
