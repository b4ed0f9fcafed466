"""``sente bench``: broadcast fan-out to N WebSocket clients, for several servers side by side, or any running one.

For each peer (a server started as a pinned subprocess, see :mod:`sente.bench.servers`), or for the server at
``--url`` (any Sente server running the reference test app: ``sente serve sente.testapp:app`` or real Sente's rig;
server CPU and memory are then not measured):

1. connect: the load generator (``--client-procs`` processes on ``--client-cpus``) opens N clients and waits for
   every protocol handshake; records connections/s and the server's RSS per idle connection (RSS after N idle
   connections minus RSS before, over N);
2. burst: a publisher client sends ``--events`` events back to back; each is broadcast to every client; records
   deliveries/s, latency p50/p99/p999 (send time inside the event), lost deliveries, server CPU seconds summed over
   the server's processes (/proc) and CPU µs per delivery;
3. rate: the publisher offers ``--rate`` deliveries/s (``rate / N`` events/s) for ``--duration`` seconds; same
   figures (the latency target lives here).

Every wait is bounded: the whole run refuses to start when its plan cannot fit ``--max-seconds`` and stops where
it is when the bound is reached (the records so far are kept, the rest are marked). Every server and load
process is killed at the end. Output: a progress line while it runs, ``results.jsonl`` (one JSON record per peer
and phase), ``table.md`` and ``chart.png`` in ``--out``, and the table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shlex
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..packers import PACKER_NAMES
from . import report
from .loadgen import (
    Auth,
    Client,
    connect,
    event_text,
    fetch_auth,
    insecure_context,
    percentile,
    publish_frame,
    worker_main,
)
from .metrics import Sample, parse_cpus, raise_nofile
from .servers import PEERS, Peer, RunningServer, checkout, peer

DEFAULT_PEERS = "picows,socketio,csente,csente-30ms,csente-uids,csente-send,csente-ref"
DESCRIPTION = """\
Broadcast fan-out to N WebSocket clients: csente side by side with other servers it starts (--peers), or the
Sente server already running at --url. For each: connect N clients (connections/s, server RSS per idle
connection), a burst of events (deliveries/s, latency p50/p99/p999, lost, server CPU per delivery), then a fixed
offered rate. Every wait is bounded by --max-seconds. Writes results.jsonl, table.md and chart.png to --out and
prints the table.
"""
QUICK = {"clients": 200, "events": 10, "rate": 20_000.0, "duration": 2.0, "drain_s": 3.0, "max_seconds": 110.0}
"""``--quick``: a side-by-side run that fits in under two minutes on two cores (flags given explicitly win)."""


class Deadline(Exception):
    """The run's time bound was reached."""


class Bench:
    """One invocation: its options, its deadline and the records produced so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.deadline: float = self.started + float(args.max_seconds)
        self.records: list[dict[str, Any]] = []
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.out / "results.jsonl"
        self.jsonl.write_text("")
        self.server_cpus = parse_cpus(args.server_cpus)
        self.client_cpus = parse_cpus(args.client_cpus)
        self._shown = 0.0

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Deadline(f"time bound of {self.args.max_seconds:.0f} s reached")
        return left

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def progress(self, text: str, *, every: float = 0.0) -> None:
        """One progress line (overwritten in place on a terminal); ``every``: at most that often."""
        now = time.monotonic()
        if not self.args.quiet and now - self._shown >= every:
            self._shown = now
            elapsed = now - self.started
            end = "\r" if sys.stderr.isatty() else "\n"
            print(f"[{elapsed:6.1f}s] {text}".ljust(110), end=end, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ one peer

    def run_peer(self, name: str) -> None:
        spec = peer(name, self.args.packer)
        self.progress(f"{name}: starting the server")
        with RunningServer(spec, self.server_cpus, self.out / f"{name}.log", timeout=min(30.0, self.left())) as srv:
            url = spec.url(srv.port)
            auth = fetch_auth(url, self.args.token_path) if spec.dialect == "sente-rig" else None
            self.measure(name, spec.dialect, url, auth, srv)

    def run_url(self, url: str) -> None:
        """The server at ``url``, started by someone else: the reference test app's session, CSRF and events."""
        self.progress(f"{url}: fetching a session and CSRF token from {self.args.token_path}")
        self.measure(url, "sente-rig", url, fetch_auth(url, self.args.token_path), None)

    def measure(self, name: str, dialect: str, url: str, auth: Auth | None, srv: RunningServer | None) -> None:
        """Connect the clients, then the burst and rate phases; ``srv`` None: no server-side CPU or memory."""
        args = self.args
        ctx = multiprocessing.get_context("spawn")
        procs: list[tuple[Any, Connection]] = []
        before = srv.tree.sample() if srv else None
        shares = [args.clients // args.client_procs + (i < args.clients % args.client_procs)
                  for i in range(args.client_procs)]
        try:
            for i, count in enumerate(shares):
                parent, child = ctx.Pipe()
                work = {"index": i, "count": count, "url": url, "dialect": dialect, "auth": auth,
                        "packer": args.packer, "insecure": args.insecure,
                        "concurrency": args.concurrency, "timeout": args.connect_timeout,
                        "deadline": self.deadline, "cpus": sorted(self.client_cpus or [])}
                proc = ctx.Process(target=worker_main, args=(work, child), daemon=True)
                proc.start()
                child.close()
                procs.append((proc, parent))
            self._connect_phase(name, srv, procs, before)
            asyncio.run(self._publish_phases(name, dialect, url, auth, srv, procs))
        finally:
            for _, conn in procs:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("stop",))
            for proc, conn in procs:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
                conn.close()

    def _connect_phase(self, name: str, srv: RunningServer | None, procs: list[tuple[Any, Connection]],
                       before: Sample | None) -> None:
        results = []
        for _proc, conn in procs:
            while not conn.poll(0.5):
                self.left()
                self.progress(f"{name}: connecting {self.args.clients} clients", every=1.0)
                if srv is not None and srv.proc.poll() is not None:
                    raise RuntimeError(f"{name} server exited while clients connected")
            msg = conn.recv()
            while msg[0] != "connected":
                msg = conn.recv()
            results.append(msg)
        ok = sum(m[1] for m in results)
        failed = sum(m[2] for m in results)
        span = max(m[4] for m in results) - min(m[3] for m in results)
        time.sleep(min(1.0, self.left()))  # let the server settle before measuring idle memory
        idle = srv.tree.sample() if srv else None
        errors = [e for m in results for e in m[5]]
        record: dict[str, Any] = {
            "kind": "connect", "peer": name, "n": self.args.clients, "connected": ok, "failed": failed,
            "seconds": round(span, 3), "conn_per_s": ok / span if span > 0 else None, "errors": errors[:5],
            "rss_before_kb": None, "rss_idle_kb": None, "server_processes": None, "rss_kb_per_conn": None,
        }
        if before is not None and idle is not None:
            record.update(rss_before_kb=before.rss_kb, rss_idle_kb=idle.rss_kb, server_processes=idle.processes,
                          rss_kb_per_conn=(idle.rss_kb - before.rss_kb) / ok if ok else None)
        self.connected = ok
        self.add(record)
        self.progress(f"{name}: {ok} connected ({failed} failed) in {span:.2f} s; "
                      f"{record['rss_kb_per_conn'] or 0:.1f} KB RSS per idle connection")
        if failed and not ok:
            raise RuntimeError(f"{name}: no client connected: {errors[:2]}")

    # ------------------------------------------------------------------ burst and rate

    async def _publish_phases(self, name: str, dialect: str, url: str, auth: Auth | None, srv: RunningServer | None,
                              procs: list[tuple[Any, Connection]]) -> None:
        loop = asyncio.get_running_loop()
        latest: dict[int, tuple[int, int, int]] = {}
        reports: dict[int, asyncio.Future[dict[str, Any]]] = {}

        def on_message(i: int, conn: Connection) -> None:
            with contextlib.suppress(EOFError, OSError):
                while conn.poll():
                    msg = conn.recv()
                    if msg[0] == "progress":
                        latest[i] = (msg[1], msg[2], msg[3])
                    elif msg[0] == "report" and i in reports and not reports[i].done():
                        reports[i].set_result(msg[1])

        for i, (_, conn) in enumerate(procs):
            loop.add_reader(conn.fileno(), on_message, i, conn)
        publisher = await connect(url, dialect, "publisher", None, self.args.connect_timeout, auth, self.args.packer,
                                  insecure_context(self.args.insecure))
        wrap = publish_frame(dialect, self.args.packer)
        try:
            for phase, mode in enumerate(self.args.modes.split(","), start=1):
                self.left()
                await self._phase(name, phase, mode, publisher, wrap, srv, procs, latest, reports)
        finally:
            for _, conn in procs:
                loop.remove_reader(conn.fileno())
            if publisher.transport is not None:
                publisher.transport.disconnect()

    async def _phase(self, name: str, phase: int, mode: str, publisher: Client, wrap: Any, srv: RunningServer | None,
                     procs: list[tuple[Any, Connection]], latest: dict[int, tuple[int, int, int]],
                     reports: dict[int, asyncio.Future[dict[str, Any]]]) -> None:
        args = self.args
        n = args.clients
        if mode == "burst":
            events, per_s = args.events, None
        elif mode == "rate":
            per_s = args.rate / n
            events = max(1, int(per_s * args.duration))
        else:
            raise ValueError(f"unknown mode {mode!r} (burst, rate)")
        for _, conn in procs:
            conn.send(("phase", phase))
        await asyncio.sleep(0.3)  # the workers switch phase before the first event
        assert publisher.transport is not None
        transport = publisher.transport
        cpu0 = srv.tree.sample() if srv else None
        t0_ns = time.monotonic_ns()
        sent = 0
        done = asyncio.Event()
        published_at = float("inf")

        async def publish() -> None:
            nonlocal sent
            start = time.monotonic()
            for i in range(events):
                if per_s is not None:
                    delay = start + i / per_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif i % 64 == 63:
                    await asyncio.sleep(0)
                transport.send(*wrap(event_text(phase, args.payload)))
                sent += 1
                if time.monotonic() > self.deadline:
                    break
            nonlocal published_at
            published_at = time.monotonic()
            done.set()

        task = asyncio.create_task(publish())
        last_total, last_change, cpu1 = -1, time.monotonic(), None
        while True:
            await asyncio.sleep(0.1)
            total = sum(rec for ph, rec, _ in latest.values() if ph == phase)
            expected = sent * self.connected
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            if done.is_set() and total >= expected:
                cpu1 = srv.tree.sample() if srv else None
                break
            if done.is_set() and (time.monotonic() - last_change > args.drain_s
                                  or time.monotonic() - published_at > args.drain_s):
                break
            if time.monotonic() > self.deadline:
                break
            cpu_now = f", server CPU {srv.tree.sample().cpu_s - cpu0.cpu_s:.2f} s" if srv and cpu0 else ""
            self.progress(f"{name} {mode}: sent {sent}/{events} events, delivered {total:,}/{events * self.connected:,}"
                          f"{cpu_now}", every=1.0)
        if cpu1 is None and srv is not None:
            cpu1 = srv.tree.sample()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for i, (_, conn) in enumerate(procs):
            reports[i] = asyncio.get_running_loop().create_future()
            conn.send(("report", sent))
        got = await asyncio.wait_for(asyncio.gather(*reports.values()), 30)
        reports.clear()
        received = sum(r["received"] for r in got)
        hist: dict[int, int] = {}
        for r in got:
            for k, v in r["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        last_ns = max((r["last_ns"] for r in got), default=0)
        span = (last_ns - t0_ns) / 1e9 if last_ns else None
        cpu = cpu1.cpu_s - cpu0.cpu_s if cpu1 and cpu0 else None
        frames = sum(r["frames"] for r in got)
        record = {
            "kind": mode, "peer": name, "n": n, "connected": self.connected, "events": sent,
            "payload_bytes": args.payload, "offered_per_s": args.rate if per_s is not None else None,
            "deliveries": received, "expected": sent * self.connected,
            "lost": sum(r["lost"] for r in got), "duplicates": sum(r["duplicates"] for r in got),
            "closed": sum(r["closed"] for r in got),
            "seconds": round(span, 4) if span else None,
            "deliveries_per_s": received / span if span else None,
            "p50_ms": percentile(hist, 0.5), "p99_ms": percentile(hist, 0.99), "p999_ms": percentile(hist, 0.999),
            "max_ms": max(hist) / 1000 if hist else None,
            "server_cpu_s": round(cpu, 4) if cpu is not None else None,
            "cpu_us_per_delivery": cpu / received * 1e6 if received and cpu is not None else None,
            "events_per_frame": received / frames if frames else None,
            "peak_rss_mb": cpu1.hwm_kb / 1024 if cpu1 else None, "rss_mb": cpu1.rss_kb / 1024 if cpu1 else None,
            "complete": received >= sent * self.connected,
        }
        self.add(record)
        self.progress(f"{name} {mode}: {received:,} deliveries, {record['lost']} lost, "
                      f"{report._fmt(record['cpu_us_per_delivery'])} µs CPU/delivery, p99 "
                      f"{report._fmt(record['p99_ms'])} ms")

    connected = 0
    """Clients connected to the current peer (deliveries expected per event)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sente bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="benchmark the Sente server already running at this ws:// or wss:// chsk URL (it must "
                   "serve the reference test app: sente serve sente.testapp:app, or real Sente's rig); no --peers")
    p.add_argument("--quick", action="store_true", help="a side-by-side run in under 2 minutes on 2 cores: "
                   + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in QUICK.items()) + " (flags given win)")
    p.add_argument("--peers", help=f"comma-separated servers to start and compare: {PEERS} (default "
                   f"{DEFAULT_PEERS}; picows and socketio only from a source checkout)")
    p.add_argument("-n", "--clients", type=int, help="WebSocket clients (default 1000)")
    p.add_argument("--modes", default="burst,rate", help="burst, rate or both (default: %(default)s)")
    p.add_argument("--events", type=int, help="events in the burst (default 20)")
    p.add_argument("--rate", type=float, help="offered deliveries/s in rate mode (default 100000)")
    p.add_argument("--duration", type=float, help="seconds of rate mode (default 5)")
    p.add_argument("--payload", type=int, default=100, help="event data bytes (default: %(default)s)")
    p.add_argument("--packer", choices=PACKER_NAMES, default="edn", help="the Sente packer: the started csente "
                   "servers use it, a --url server must (default: %(default)s)")
    p.add_argument("--token-path", default="/csrf-token", help="the reference app's session and CSRF token route, "
                   "for --url and the csente-ref peer (default: %(default)s)")
    p.add_argument("--insecure", action="store_true", help="wss:// without certificate checks (a self-signed server)")
    p.add_argument("--client-procs", type=int, default=1, help="load-generator processes (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=200, help="connections in flight per load-generator process "
                   "(default: %(default)s)")
    p.add_argument("--connect-timeout", type=float, default=20.0, help="seconds per connection and handshake "
                   "(default: %(default)s)")
    p.add_argument("--server-cpus", help="pin started servers to these CPUs, e.g. 0 or 0-1 (default: unpinned)")
    p.add_argument("--client-cpus", help="pin the load generator and publisher to these CPUs, e.g. 1 "
                   "(default: unpinned)")
    p.add_argument("--drain-s", type=float, help="wait at most this long for deliveries after the last event is "
                   "sent (default 5 s); what has not arrived by then counts as lost")
    p.add_argument("--max-seconds", type=float, help="hard bound on the whole run (default 120 s)")
    p.add_argument("--out", default="sente-bench", help="output folder: results.jsonl, table.md, chart.png "
                   "(default: %(default)s)")
    p.add_argument("--report", metavar="JSONL", help="only render the table and chart of a saved results.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    args = p.parse_args(argv)
    defaults = {"clients": 1000, "events": 20, "rate": 100_000.0, "duration": 5.0, "drain_s": 5.0,
                "max_seconds": 120.0}
    for key, value in (QUICK if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.url is not None and args.peers is not None:
        p.error("--url benchmarks one running server; --peers starts servers: give one of them")
    if args.peers is None:
        args.peers = default_peers()
    if args.clients < 1 or args.client_procs < 1 or args.events < 1 or args.rate <= 0 or args.duration <= 0:
        p.error("--clients, --client-procs, --events, --rate and --duration must be positive")
    return args


def default_peers() -> str:
    """Every default peer this install can start (picows and socketio only from a source checkout)."""
    peers = DEFAULT_PEERS.split(",")
    if checkout() is None:
        peers = [name for name in peers if name not in ("picows", "socketio")]
    return ",".join(peers)


def plan_seconds(args: argparse.Namespace, peers: list[str]) -> float:
    """A lower bound on the run's time: rate phases, settling, a connection rate of 10k/s."""
    modes = args.modes.split(",")
    per_peer: float = 2.0 + args.clients / 10_000 + 1.0 + 0.3 * len(modes) + (args.duration if "rate" in modes else 0)
    return per_peer * len(peers)


def render(records: list[dict[str, Any]], out: Path) -> str:
    text = report.table(records)
    ratios = report.ratios(records)
    if ratios:
        text += "\n\n" + ratios
    (out / "table.md").write_text(text + "\n", encoding="utf-8")
    if report.chart(records, out / "chart.png"):
        text += f"\n\nchart: {out / 'chart.png'}"
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        path = Path(args.report)
        print(render(report.read_jsonl(path), path.parent))
        return 0
    peers = [args.url] if args.url else [p.strip() for p in args.peers.split(",") if p.strip()]
    try:
        specs: list[Peer | None] = [None] if args.url else [peer(name, args.packer) for name in peers]
        bench = Bench(args)
    except ValueError as e:
        print(f"sente bench: {e}", file=sys.stderr)
        return 2
    need = plan_seconds(args, peers)
    if need > args.max_seconds:
        print(f"sente bench: this plan needs at least {need:.0f} s, over --max-seconds {args.max_seconds:.0f}; "
              "refusing to start (fewer peers, clients or a shorter --duration, or a larger bound)", file=sys.stderr)
        return 2
    limit = raise_nofile()
    if limit < args.clients + 100:
        print(f"sente bench: open-file limit {limit} is too low for {args.clients} clients", file=sys.stderr)
        return 2
    command = "sente bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print(f"# {command}\n# {os.cpu_count()} CPUs, server CPUs {args.server_cpus or 'any'}, client CPUs "
          f"{args.client_cpus or 'any'}, nofile {limit}", flush=True)
    status = 0
    for name, spec in zip(peers, specs, strict=True):
        try:
            if spec is None:
                bench.run_url(name)
            else:
                bench.run_peer(name)
        except Deadline as e:
            bench.progress(f"{name}: stopped: {e}")
            bench.add({"kind": "aborted", "peer": name, "reason": str(e)})
            status = 3
            break
        except Exception as e:
            bench.progress(f"{name}: failed: {type(e).__name__}: {e}")
            bench.add({"kind": "failed", "peer": name, "reason": f"{type(e).__name__}: {e}"})
            status = 1
    if not args.quiet:
        print(file=sys.stderr)
    records = [r for r in bench.records if r["kind"] in ("connect", "burst", "rate")]
    print(render(records, bench.out))
    print(f"\nresults: {bench.jsonl}")
    return status


if __name__ == "__main__":
    sys.exit(main())
