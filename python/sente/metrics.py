"""Prometheus metrics for Sente servers and the broker: counted cheaply, aggregated over workers at scrape time.

Why this design:

* **Counting costs an integer add.** The hot paths (the protocol core and the asyncio driver) bump plain ``int``
  attributes of one per-process :class:`~sente.protocol.stats.Counters` object, once per message, batch or action,
  never per event × connection (a push batch to N connections is one ``+= events * N``). Histograms are a
  ``bisect`` into a list, once per flush or reply. Nothing calls prometheus-client on the hot path. The counters
  belong to the protocol layer (:mod:`sente.protocol.stats`); this module only reads them.
* **Exported in bulk, over shared memory.** Under the broker each worker owns one slot of the file
  ``/dev/shm/<shm name>.metrics`` (:class:`MetricsBlock`, created zeroed by the supervisor next to its segment).
  Every :data:`PUBLISH_INTERVAL_S` (and before each scrape it answers, and on exit) a worker copies its counters and
  gauges into its slot in one slice assignment (:class:`Publisher`). ``GET /metrics`` on any worker (the kernel
  picks one) reads every slot, sums them and adds the broker-wide numbers (uid registry, inbox drops, restarts,
  each worker's CPU and RSS from ``/proc``): every worker answers the same totals, so the port can be scraped
  like one server. A scrape reads a few KiB and ~2×workers small ``/proc`` files: about a millisecond on the
  worker's event loop.
* **Restarts never make a counter go backwards.** A slot belongs to a worker *index*, not a process: a restarted
  worker loads its slot's counters and continues from them, so the sums Prometheus sees only grow (a SIGKILLed
  worker loses at most its last :data:`PUBLISH_INTERVAL_S` of counts, never what was published). Gauges are summed
  only over slots whose worker runs now (the supervisor's pid table), so a dead worker's connections vanish at
  once. Per-process numbers (CPU seconds) are labelled ``worker`` and reset with the process, which Prometheus'
  ``rate()`` handles as a counter reset. Rejected alternative: prometheus-client's multiprocess mode, which keeps
  one file per pid and needs pid bookkeeping for dead workers and a write to an mmap'd file per increment.

With ``--workers 0`` (one process) the same endpoint reads this process's counters directly.

The Redis backplane (:class:`~sente.cluster.redis.RedisLink`, one per worker) counts in its own
:attr:`~sente.cluster.redis.RedisLink.stats` (plain ints). A running link registers itself here (:func:`track_link`);
each publish adds what the worker's links counted since the last one to its :class:`Counters` (so they survive a
restart like the others) and writes ``backplane_up``: 1 when the worker has a link and every one of its links is up.
``sente_backplane_up`` is the *number of live workers* whose link is up (one series, like ``sente_workers_up``):
0 on a broker without Redis, whose backplane counters stay at 0, so every family is always present. Alert on
``sente_backplane_up < sente_workers_up`` where Redis is configured.

Metrics (base units; label values bounded: transport, result, reason, worker index): see :data:`HELP`.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from csente.shm import ANY

# The counters live with the core that counts them (sente.protocol.stats); their old names here still work.
from .protocol.stats import BATCH_BUCKETS, LATENCY_BUCKETS, REASONS, Counters, counters
from .protocol.stats import Histogram as Histogram
from .protocol.stats import batch_events as batch_events
from .transport.asgi import Receive, Scope, Send

PUBLISH_INTERVAL_S = 1.0
METRICS_PATH = "/metrics"
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---------------------------------------------------------------------- live gauges of this process


class Server(Protocol):
    """What the gauges need from a :class:`~sente.server.ChannelSocketServer`."""

    def connection_counts(self) -> tuple[int, int]: ...

    @property
    def local_uid_count(self) -> int: ...


_servers: weakref.WeakSet[Any] = weakref.WeakSet()


def track(server: Server) -> None:
    """Count ``server``'s connections in this process's ``sente_connections`` (servers register themselves)."""
    _servers.add(server)


def connections() -> tuple[int, int]:
    """(WebSocket connections, Ajax clients) of every live server of this process."""
    ws = ajax = 0
    for server in list(_servers):
        w, a = server.connection_counts()
        ws += w
        ajax += a
    return ws, ajax


# ---------------------------------------------------------------------- the Redis backplane of this process


_links: weakref.WeakKeyDictionary[Any, tuple[int, int, int, int]] = weakref.WeakKeyDictionary()
"""Running Redis links -> their stats as last added to the counters."""


def _link_totals(link: Any) -> tuple[int, int, int, int]:
    s = link.stats
    return s.published, s.received, s.dropped_down, s.dropped_overflow


def _add_link(link: Any, seen: tuple[int, int, int, int], source: Counters) -> tuple[int, int, int, int]:
    now = _link_totals(link)
    source.backplane_published += now[0] - seen[0]
    source.backplane_received += now[1] - seen[1]
    source.backplane_dropped_outage += now[2] - seen[2]
    source.backplane_dropped_queue_full += now[3] - seen[3]
    return now


def track_link(link: Any) -> None:
    """Count ``link``'s :attr:`stats` in this process's ``sente_backplane_*`` (a link registers when it starts)."""
    if link not in _links:
        _links[link] = _link_totals(link)


def untrack_link(link: Any) -> None:
    """A stopped link: its last counts go to the counters; it no longer weighs on ``backplane_up``."""
    seen = _links.pop(link, None)
    if seen is not None:
        _add_link(link, seen, counters())


def sync_backplane(source: Counters | None = None) -> int:
    """Add what this process's links counted since the last call to ``source``; 1 if the process has a running
    link and every one is up, else 0."""
    target = source if source is not None else counters()
    up = 1 if _links else 0
    for link, seen in list(_links.items()):
        _links[link] = _add_link(link, seen, target)
        if not link.active:
            up = 0
    return up


# ---------------------------------------------------------------------- the shared-memory block


GAUGES = ("pid", "connections_ws", "connections_ajax", "local_uids", "backplane_up")
SLOT_WIDTH = len(GAUGES) + Counters.width()


class MetricsBlock:
    """``<directory>/<name>.metrics``: one slot of float64 cells per worker (gauges, then :meth:`Counters.values`).

    Only worker i writes slot i (whole-slice copies); readers may see a slot mid-copy, off by one publish at most.
    """

    def __init__(self, path: str, workers: int, mapping: mmap.mmap) -> None:
        self.path = path
        self.workers = workers
        self._map = mapping
        self._cells: memoryview[float] = memoryview(mapping).cast("d")

    @staticmethod
    def path_for(name: str, directory: str) -> str:
        return os.path.join(directory, name + ".metrics")

    @classmethod
    def create(cls, name: str, workers: int, directory: str = "/dev/shm") -> MetricsBlock:
        path = cls.path_for(name, directory)
        size = max(1, workers) * SLOT_WIDTH * 8
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)  # fresh: zero counters at broker start
        try:
            os.ftruncate(fd, size)
            return cls(path, workers, mmap.mmap(fd, size))
        finally:
            os.close(fd)

    @classmethod
    def attach(cls, name: str, directory: str = "/dev/shm") -> MetricsBlock:
        path = cls.path_for(name, directory)
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            return cls(path, size // (SLOT_WIDTH * 8), mmap.mmap(fd, size))
        finally:
            os.close(fd)

    def read(self, index: int) -> list[float]:
        """Slot ``index``: the gauges (:data:`GAUGES`), then :meth:`Counters.values`."""
        with self._cells[index * SLOT_WIDTH:(index + 1) * SLOT_WIDTH] as cells:
            return cast(list[float], cells.tolist())

    def write(self, index: int, values: Sequence[float]) -> None:
        with self._cells[index * SLOT_WIDTH:(index + 1) * SLOT_WIDTH] as cells:
            cells[:] = array.array("d", values)

    def close(self) -> None:
        self._cells.release()
        self._map.close()

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class Publisher:
    """Copies this process's counters and gauges into its slot, on a timer of the event loop."""

    def __init__(self, block: MetricsBlock, index: int, source: Counters | None = None) -> None:
        self.block = block
        self.index = index
        self.counters = source if source is not None else counters()
        self._timer: Any = None
        self.counters.load(block.read(index)[len(GAUGES):])  # a restarted worker continues its index's counters

    def publish(self) -> None:
        ws, ajax = connections()
        uids = sum(s.local_uid_count for s in list(_servers))
        up = sync_backplane(self.counters)
        self.block.write(self.index, [os.getpid(), ws, ajax, uids, up, *self.counters.values()])

    def start(self) -> None:
        """Publish now and every :data:`PUBLISH_INTERVAL_S` on the running loop."""
        import asyncio

        loop = asyncio.get_running_loop()

        def tick() -> None:
            self.publish()
            self._timer = loop.call_later(PUBLISH_INTERVAL_S, tick)

        tick()

    def stop(self) -> None:
        """Stop the timer and publish a last time."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.publish()


# ---------------------------------------------------------------------- the exposition


HELP = {
    "connections": "Open connections: WebSockets, and registered Ajax clients (long-polling or between polls).",
    "connected_uids": "Distinct connected user ids, broker-wide (Sente's connected-uids :any).",
    "handshakes": "Handshakes answered (result=ok) or refused before one (result=rejected).",
    "events_received": "Event messages received from clients (WebSocket frames and Ajax POSTs, pings included).",
    "events_pushed": "Events pushed by the application (send that found a uid, broadcast).",
    "deliveries": "Pushed events handed to connections: events x connections, counted by the writing worker.",
    "bytes_sent": "Payload bytes written: WebSocket messages and Ajax response bodies.",
    "bytes_received": "Payload bytes received: WebSocket messages and Ajax POST bodies.",
    "batch_events": "Events per packed push batch.",
    "flush_latency_seconds": "From the first push of a batch to its write (the send-buffer window plus loop delay).",
    "reply_latency_seconds": "From an event with a callback arriving to the application's reply going out.",
    "rejections": "Refused requests by reason (csrf, origin, unauthorized, no_client_id, reject_fn, size; request "
                  "heads: header_size, header_count, header_timeout, body_timeout, bad_request; flood: a client "
                  "over its share; protocol: a WebSocket failed for a frame RFC 6455 forbids).",
    "decode_errors": "Unreadable messages from clients (dropped frames, Ajax POSTs answered 500).",
    "slow_consumer_closes": "WebSockets closed for holding more than max_outbound_bytes unsent.",
    "dropped_events": "Event messages dropped because the receive buffer was full.",
    "send_errors": "Batches or actions skipped because packing, writing or reading them raised (a custom packer, "
                   "an unencodable value, an unreadable inbox record); everyone else's messages still went out.",
    "handler_errors": "Event messages whose application handler raised (logged as one rate-limited warning).",
    "pack_errors": "Pushed events dropped because the packer cannot write them (an unsupported value).",
    "ring_drops": "Records for another worker dropped (by destination worker): its inbox stayed full past the "
                  "sender's outbox cap, or a keyed record was larger than an inbox takes.",
    "worker_restarts": "Worker processes restarted by the supervisor (by worker index).",
    "worker_cpu_seconds": "CPU time (user + system) of the worker process running now (resets on restart).",
    "worker_resident_memory_bytes": "Resident memory of the worker process.",
    "workers_up": "Worker processes running and listening now.",
    "backplane_up": "Workers whose Redis backplane link is up (0 without Redis; compare with sente_workers_up).",
    "backplane_published": "Batches published to the other nodes through Redis.",
    "backplane_received": "Batches received from the other nodes through Redis.",
    "backplane_dropped": "Batches for other nodes dropped: Redis unreachable (outage) or outbound queue full.",
}


class WorkerTable(Protocol):
    """What the broker families read of the supervisor's counters (:class:`~sente.cluster.supervisor.ClusterStats`,
    handed in by the worker: the exporter never imports the cluster layer around it)."""

    def worker_pid(self, index: int) -> int: ...

    def restarts(self, index: int) -> int: ...

    def close(self) -> None: ...


class SenteCollector(Collector):
    """Builds every ``sente_*`` family from slots (broker) or from this process's counters (alone).

    Under the broker (``shm_name`` given), ``attach_stats(shm_name, directory)`` opens the supervisor's counters
    (``ClusterStats.attach``) on the first scrape.
    """

    def __init__(self, shm_name: str | None = None, shared: Any = None, directory: str = "/dev/shm",
                 publisher: Publisher | None = None,
                 attach_stats: Callable[[str, str], WorkerTable] | None = None) -> None:
        if shm_name is not None and attach_stats is None:
            raise ValueError("a broker's collector needs attach_stats (sente.cluster.supervisor.ClusterStats.attach)")
        self.shm_name = shm_name
        self.shared = shared
        self.directory = directory
        self.publisher = publisher
        self._attach_stats = attach_stats
        self._block: MetricsBlock | None = None
        self._stats: Any = None

    def close(self) -> None:
        if self._block is not None:
            self._block.close()
            self._stats.close()
            self._block = self._stats = None

    def _broker(self) -> tuple[MetricsBlock, Any] | None:
        if self.shm_name is None:
            return None
        if self._block is None:
            assert self._attach_stats is not None  # checked in __init__
            self._block = MetricsBlock.attach(self.shm_name, self.directory)
            self._stats = self._attach_stats(self.shm_name, self.directory)
        return self._block, self._stats

    def collect(self) -> Iterable[Metric]:
        broker = self._broker()
        if broker is None:
            ws, ajax = connections()
            uids = sum(s.local_uid_count for s in list(_servers))
            up = sync_backplane()
            rows: list[tuple[int, int, Sequence[float]]] = [(0, os.getpid(), [os.getpid(), ws, ajax, uids, up,
                                                                              *counters().values()])]
            live = rows
        else:
            if self.publisher is not None:
                self.publisher.publish()
            block, stats = broker
            rows = [(i, stats.worker_pid(i), block.read(i)) for i in range(block.workers)]
            live = [r for r in rows if r[1] and int(r[2][0]) == r[1]]
        yield from self._families(rows, live, broker)

    def _families(self, rows: list[tuple[int, int, Sequence[float]]], live: list[tuple[int, int, Sequence[float]]],
                  broker: tuple[MetricsBlock, Any] | None) -> Iterator[Metric]:
        n = len(GAUGES)
        total = [sum(col) for col in zip(*(r[2][n:] for r in rows), strict=True)] if rows else []
        c = dict(zip(Counters.COUNTERS, total, strict=False))

        g = GaugeMetricFamily("sente_connections", HELP["connections"], labels=["transport"])
        g.add_metric(["ws"], sum(r[2][1] for r in live))
        g.add_metric(["ajax"], sum(r[2][2] for r in live))
        yield g
        if self.shared is not None and broker is not None:  # Ajax client keys (b"\x01...") are not uids
            uids = sum(1 for key in self.shared.connected_uids(ANY) if not key.startswith(b"\x01"))
        else:
            uids = int(sum(r[2][3] for r in live))
        yield GaugeMetricFamily("sente_connected_uids", HELP["connected_uids"], value=uids)

        hs = CounterMetricFamily("sente_handshakes", HELP["handshakes"], labels=["transport", "result"])
        hs.add_metric(["ws", "ok"], c["handshakes_ws"])
        hs.add_metric(["ajax", "ok"], c["handshakes_ajax"])
        hs.add_metric(["ws", "rejected"], c["handshakes_ws_rejected"])
        hs.add_metric(["ajax", "rejected"], c["handshakes_ajax_rejected"])
        yield hs
        for key in ("events_received", "events_pushed", "deliveries", "bytes_sent", "bytes_received",
                    "decode_errors", "slow_consumer_closes", "dropped_events", "send_errors", "handler_errors",
                    "pack_errors"):
            yield CounterMetricFamily(f"sente_{key}", HELP[key], value=c[key])
        rej = CounterMetricFamily("sente_rejections", HELP["rejections"], labels=["reason"])
        for reason in REASONS:
            rej.add_metric([reason], c[f"rejected_{reason}"])
        yield rej
        yield GaugeMetricFamily("sente_backplane_up", HELP["backplane_up"], value=sum(r[2][4] for r in live))
        for key in ("backplane_published", "backplane_received"):
            yield CounterMetricFamily(f"sente_{key}", HELP[key], value=c[key])
        bp = CounterMetricFamily("sente_backplane_dropped", HELP["backplane_dropped"], labels=["reason"])
        bp.add_metric(["outage"], c["backplane_dropped_outage"])
        bp.add_metric(["queue_full"], c["backplane_dropped_queue_full"])
        yield bp

        at = len(Counters.COUNTERS)
        for name, bounds, unit_key in (("sente_flush_latency_seconds", LATENCY_BUCKETS, "flush_latency_seconds"),
                                       ("sente_reply_latency_seconds", LATENCY_BUCKETS, "reply_latency_seconds"),
                                       ("sente_batch_events", BATCH_BUCKETS, "batch_events")):
            cells = total[at:at + len(bounds) + 2] if total else [0.0] * (len(bounds) + 2)
            at += len(bounds) + 2
            buckets, running = [], 0.0
            for bound, count in zip((*(_fmt(b) for b in bounds), "+Inf"), cells[:-1], strict=True):
                running += count
                buckets.append((bound, running))
            yield HistogramMetricFamily(name, HELP[unit_key], buckets=buckets, sum_value=cells[-1])

        if broker is not None:
            yield from self._broker_families(rows, broker[1], {r[1] for r in live})

    def _broker_families(self, rows: list[tuple[int, int, Sequence[float]]], stats: Any,
                         listening: set[int]) -> Iterator[Metric]:
        """``listening``: pids of the workers that publish their row (they do once they listen): only those are up."""
        drops = CounterMetricFamily("sente_ring_drops", HELP["ring_drops"], labels=["worker"])
        restarts = CounterMetricFamily("sente_worker_restarts", HELP["worker_restarts"], labels=["worker"])
        cpu = CounterMetricFamily("sente_worker_cpu_seconds", HELP["worker_cpu_seconds"], labels=["worker"])
        rss = GaugeMetricFamily("sente_worker_resident_memory_bytes", HELP["worker_resident_memory_bytes"],
                                labels=["worker"])
        up = 0
        for index, pid, _ in rows:
            label = [str(index)]
            if self.shared is not None:
                drops.add_metric(label, self.shared.stats(index)["dropped"])
            restarts.add_metric(label, stats.restarts(index))
            usage = process_usage(pid) if pid else None
            if usage is not None:
                up += pid in listening  # a started worker that does not listen yet is not up
                cpu.add_metric(label, usage[0])
                rss.add_metric(label, usage[1])
        yield drops
        yield restarts
        yield cpu
        yield rss
        yield GaugeMetricFamily("sente_workers_up", HELP["workers_up"], value=up)


def _fmt(bound: float) -> str:
    return repr(float(bound))


_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of ``pid`` from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read().split()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": state is field 3, utime 14, stime 15
    return (int(fields[11]) + int(fields[12])) / _TICKS, int(statm[1]) * _PAGE


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def registry_for(collector: SenteCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


# ---------------------------------------------------------------------- the route


def metrics_route(inner: AsgiApp, collector: SenteCollector | None = None) -> AsgiApp:
    """``inner`` behind ``GET /metrics`` (the exposition of ``collector``, default: this process alone)."""
    registry = registry_for(collector if collector is not None else SenteCollector())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != METRICS_PATH:
            await inner(scope, receive, send)
            return
        body = exposition(registry)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})

    return app
