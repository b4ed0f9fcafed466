"""The fan-out benchmark tool itself, in one tiny bounded run: 20 clients, 50 events, csente, burst and rate.

It checks the tool (servers started and killed, handshakes, the publisher, counting, the report files), not the
numbers: every event reached every client (0 lost), and the JSON lines, the table and the chart were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.fanout.loadgen import bucket, percentile
from bench.fanout.servers import ROOT


def test_fanout_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "bench.fanout", "--peers", "csente", "-n", "20", "--events", "50",
        "--rate", "2000", "--duration", "0.5", "--drain-s", "2", "--max-seconds", "14", "--quiet",
        "--out", str(tmp_path),
    ]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
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
    cmd = [sys.executable, "-m", "bench.fanout", "--duration", "100", "--max-seconds", "10", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "refusing to start" in done.stderr


def test_histogram_percentiles() -> None:
    assert [bucket(v) for v in (0, 5, 1023)] == [0, 5, 1023]
    assert bucket(123_456) <= 123_456 < bucket(123_456) * 1.001 + 1
    hist = {bucket(v): 1 for v in range(1, 1001)}  # 1..1000 µs
    assert percentile(hist, 0.5) == 0.5 and percentile(hist, 0.99) == 0.99 and percentile({}, 0.5) is None
