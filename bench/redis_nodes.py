"""``python -m bench.redis_nodes``: cross-node broadcast through Redis, 2 nodes against 1.

Starts a ``redis-server`` on a free port, then for each layout ``sente serve tests.sente.cluster.redis_app:app
--workers W --redis-url URL`` once (1 node) or twice (2 nodes), opens N WebSocket clients spread evenly over the
nodes, and broadcasts ``--events`` events through ``GET /broadcast`` on the first node, each carrying its send
time. Prints, per layout: deliveries/s (all deliveries over the time from the first send to the last delivery),
latency p50/p99 (send → client), and lost deliveries. Every wait is bounded; every process is killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from sente import edn

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.sente.cluster.redis_app:app"
LOG_LEVEL = "warning"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(url: str, workers: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sente", "serve", APP, "--workers", str(workers), "--port", str(port),
         "--log-level", LOG_LEVEL, "--redis-url", url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert re.search(r"serving", line), line
    return proc, port


async def wait_uids(session: aiohttp.ClientSession, port: int, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with session.get(f"http://127.0.0.1:{port}/uids") as r:
            if len(edn.loads(await r.text())) >= n:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"node on {port} never saw {n} uids")


async def run_layout(url: str, nodes: int, workers: int, clients: int, events: int) -> dict[str, Any]:
    procs = [start_node(url, workers) for _ in range(nodes)]
    latencies: list[float] = []
    last = [0.0]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            conns = []
            for i in range(clients):
                port = procs[i % nodes][1]
                conns.append(await session.ws_connect(f"http://127.0.0.1:{port}/chsk?client-id=c{i}&uid=u{i}"))
                await conns[-1].receive(timeout=10)  # the handshake
            for _, port in procs:
                await wait_uids(session, port, clients)

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                got = 0
                while got < events:
                    msg = await ws.receive(timeout=15)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return
                    batch = edn.loads(msg.data)[0]
                    if not isinstance(batch, list):
                        continue
                    now = time.perf_counter()
                    for event in batch:
                        latencies.append(now - event[1])
                        got += 1
                    last[0] = max(last[0], now)

            readers = [asyncio.ensure_future(read(ws)) for ws in conns]
            first = time.perf_counter()
            for _ in range(events):
                async with session.get(f"http://127.0.0.1:{procs[0][1]}/broadcast",
                                       params={"x": str(time.perf_counter())}) as r:
                    assert r.status == 200
                await asyncio.sleep(0.005)
            await asyncio.wait(readers, timeout=10)
            for t in readers:
                t.cancel()
            # no close handshakes (each waits for the server's answer): the processes are killed next
    finally:
        for proc, _ in procs:
            proc.kill()
            proc.wait(10)
    latencies.sort()
    span = max(last[0] - first, 1e-9)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"nodes": nodes, "workers": workers, "clients": clients, "events": events,
            "deliveries_per_s": len(latencies) / span, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "lost": clients * events - len(latencies)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.redis_nodes", description=__doc__)
    p.add_argument("-n", "--clients", type=int, default=200)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="workers per node (default 1)")
    args = p.parse_args(argv)
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
        print("| nodes | workers/node | clients | deliveries/s | p50 ms | p99 ms | lost |")
        print("|---|---|---|---|---|---|---|")
        for nodes in (1, 2):
            r = asyncio.run(asyncio.wait_for(run_layout(url, nodes, args.workers, args.clients, args.events), 120))
            print(f"| {nodes} | {args.workers} | {args.clients} | {r['deliveries_per_s']:,.0f} | {r['p50_ms']:.1f} "
                  f"| {r['p99_ms']:.1f} | {r['lost']} |", flush=True)
    finally:
        with contextlib.suppress(OSError):
            redis.kill()
            redis.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
