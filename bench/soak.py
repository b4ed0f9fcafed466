"""Soak: connection churn and a numbered broadcast stream against ``sente serve --workers N``, sampling the workers'
memory and file descriptors; JSON out. Run by hand (minutes), never in the test suite::

    python -m bench.soak --seconds 300 --clients 1000 --churn 200 --out soak.json

What runs, all on 127.0.0.1: ``sente serve sente.bench.app:app --workers N`` on a free port; ``--clients`` stable
WebSocket clients (one uid each) that read everything; a publisher that sends ``[:bench/pub n]`` every
``--interval`` seconds, which the app broadcasts as ``[:bench/f n]`` to every client; ``--churn`` connections per
second that upgrade, read their handshake and leave (half with a close frame, half by dropping TCP). Every second
the RSS and open fds of each worker (and the supervisor) are sampled.

The report: how many pushes each stable client missed, got twice or out of order (all must be 0), connects made,
and the RSS (also without its shared-memory part: ``private_mb``) and fd series with their first, median and last
values and last/first ratios (the baseline is the same run's first sample, after the stable clients connected): a
leak shows as a ratio that keeps growing with the run's length.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sente.cluster.supervisor import ClusterStats
from sente.edn import Keyword
from sente.packers import EdnPacker

REPO = Path(__file__).resolve().parent.parent
EDN = EdnPacker()
F = Keyword("bench/f")
IO_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mask_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = await reader.readexactly(2)
    n = first[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return first[0] & 0x0F, await reader.readexactly(n)


async def upgrade(port: int, uid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /chsk?client-id={uid}&uid={uid} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"upgrade refused: {head[:40]!r}")
    _, payload = await asyncio.wait_for(read_frame(reader), IO_TIMEOUT)  # the handshake
    if b"chsk/handshake" not in payload:
        raise ConnectionError("no handshake")
    return reader, writer


class Stable:
    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.got: list[int] = []
        self.lost_connection = False

    async def run(self, port: int, ready: asyncio.Event, stop: asyncio.Event) -> None:
        reader, writer = await upgrade(port, self.uid)
        ready.set()
        try:
            while not stop.is_set():
                opcode, payload = await read_frame(reader)
                if opcode == 0x8:
                    self.lost_connection = True
                    return
                if opcode == 0x1:
                    events, _ = EDN.unpack_envelope(payload.decode())
                    if isinstance(events, list):
                        self.got.extend(e[1] for e in events if isinstance(e, list) and e and e[0] == F)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.lost_connection = True
        finally:
            writer.close()


def sample(pid: int) -> tuple[float, float, int]:
    """(RSS, of which shared memory, in MB; open fds) of a process; zeros if it is gone. The shared part grows as
    the workers touch more of the broker's segment (a uid registry slot per distinct uid): bounded, not a leak."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss, shm = (int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
                    for k in ("VmRSS", "RssShmem"))
        return rss, shm, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return 0.0, 0.0, 0


async def soak(port: int, pids: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    stables = [Stable(f"s{i}") for i in range(args.clients)]
    tasks = []
    for s in stables:
        ready = asyncio.Event()
        tasks.append(asyncio.get_running_loop().create_task(s.run(port, ready, stop)))
        await asyncio.wait_for(ready.wait(), IO_TIMEOUT)
    _, pub = await upgrade(port, "publisher")
    series: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in pids}
    churned = Counter[str]()
    sent = 0
    started = time.monotonic()

    async def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                _, writer = await upgrade(port, f"c{n % args.churn_uids}")
                if n % 2:
                    writer.write(bytes((0x88, 0x82)) + bytes(4) + (1000).to_bytes(2, "big"))  # close 1000 (zero mask)
                    writer.close()
                else:
                    writer.transport.abort()
                churned["ok"] += 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                churned["failed"] += 1
            await asyncio.sleep(1 / args.churn)

    async def sampler() -> None:
        while not stop.is_set():
            t = time.monotonic() - started
            for name, pid in pids.items():
                rss, shm, fds = sample(pid)
                series[name].append((round(t, 1), round(rss, 2), round(shm, 2), fds))
            await asyncio.sleep(1.0)

    helpers = [asyncio.get_running_loop().create_task(c()) for c in (churn, sampler)]
    deadline = started + args.seconds
    while time.monotonic() < deadline:
        pub.write(mask_frame(f"[[:bench/pub {sent}] nil]".encode()))
        sent += 1
        await asyncio.sleep(args.interval)
    settle = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < settle and any(len(s.got) < sent and not s.lost_connection for s in stables):
        await asyncio.sleep(0.1)
    stop.set()
    for task in (*helpers, *tasks):
        task.cancel()
    pub.close()
    missing = sum(len(set(range(sent)) - set(s.got)) for s in stables)
    dupes = sum(sum(c - 1 for c in Counter(s.got).values() if c > 1) for s in stables)
    unordered = sum(s.got != sorted(s.got) for s in stables)

    def summary(points: list[tuple[float, float, float, int]]) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, Any]:
            return {"first": values[0], "median": statistics.median(values), "last": values[-1],
                    "ratio": round(values[-1] / values[0], 3) if values[0] else None}

        return {"rss_mb": stats([p[1] for p in points]), "private_mb": stats([p[1] - p[2] for p in points]),
                "fds": stats([p[3] for p in points])}

    return {
        "config": {"seconds": args.seconds, "clients": args.clients, "churn_per_s": args.churn,
                   "churn_uids": args.churn_uids,
                   "interval_s": args.interval, "workers": args.workers},
        "pushes_sent": sent, "deliveries_expected": sent * args.clients,
        "missing": missing, "duplicates": dupes, "out_of_order_clients": unordered,
        "stable_clients_disconnected": sum(s.lost_connection for s in stables),
        "churn_connects": churned["ok"], "churn_failures": churned["failed"],
        "processes": {name: summary(points) for name, points in series.items() if points},
        "series": series,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=200, help="stable WebSocket clients (default 200)")
    parser.add_argument("--churn", type=float, default=50.0, help="connections per second (default 50)")
    parser.add_argument("--churn-uids", type=int, default=5000, help="distinct uids the churn cycles through")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between pushes (default 0.01)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="write the JSON report here (default: stdout)")
    args = parser.parse_args(argv)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sente", "serve", "sente.bench.app:app", "--workers", str(args.workers),
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"shm (sente-\d+-[0-9a-f]{8})", first)
        if m is None:
            print(f"soak: sente serve did not start: {first!r}", file=sys.stderr)
            return 1
        time.sleep(1.0)
        stats = ClusterStats.attach(m.group(1))
        pids = {"supervisor": proc.pid, **{f"worker{i}": stats.worker_pid(i) for i in range(args.workers)}}
        stats.close()
        report = asyncio.run(soak(port, pids, args))
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    brief = {k: v for k, v in report.items() if k != "series"}
    print(json.dumps(brief, indent=1), file=sys.stderr)
    return 0 if report["missing"] == 0 and report["duplicates"] == 0 and not report["out_of_order_clients"] else 1


if __name__ == "__main__":
    sys.exit(main())
