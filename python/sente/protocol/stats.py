"""What the server core counts: plain integers and bucket lists it owns, read by the exporter (:mod:`sente.metrics`).

The hot paths (the protocol core and the asyncio driver) bump plain ``int`` attributes of one per-process
:class:`Counters` object, once per message, batch or action, never per event × connection. Histograms are a
``bisect`` into a list, once per flush or reply. Nothing here knows about Prometheus or shared memory: the
exporter, one layer out, copies these numbers into its slot and builds the ``sente_*`` families from them.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from .security import NO_CLIENT_ID

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Seconds, from 100 µs: realtime flushes and replies live in the first few buckets."""
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Events per packed batch."""
REASONS = ("csrf", "origin", "unauthorized", "no_client_id", "reject_fn", "size", "header_size", "header_count",
           "header_timeout", "body_timeout", "bad_request", "flood", "protocol")


class Histogram:
    """Cumulative-at-export histogram: per-bucket counts (the last one is +Inf) and the sum of observations."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def width(self) -> int:
        return len(self.counts) + 1


class Counters:
    """This process's counters: plain attributes the hot paths add to (see the module docstring)."""

    COUNTERS = (
        "handshakes_ws", "handshakes_ajax", "handshakes_ws_rejected", "handshakes_ajax_rejected",
        "events_received", "events_pushed", "deliveries", "bytes_sent", "bytes_received", "decode_errors",
        "slow_consumer_closes", "dropped_events", "pack_errors", *(f"rejected_{r}" for r in REASONS),
        "backplane_published", "backplane_received", "backplane_dropped_outage", "backplane_dropped_queue_full",
        "send_errors", "handler_errors",
    )
    __slots__ = (*COUNTERS, "flush_latency", "reply_latency", "batch_events")

    def __init__(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.flush_latency = Histogram(LATENCY_BUCKETS)
        self.reply_latency = Histogram(LATENCY_BUCKETS)
        self.batch_events = Histogram(BATCH_BUCKETS)

    # declared for the type checker (set in __init__ through setattr)
    handshakes_ws: int
    handshakes_ajax: int
    handshakes_ws_rejected: int
    handshakes_ajax_rejected: int
    events_received: int
    events_pushed: int
    deliveries: int
    bytes_sent: int
    bytes_received: int
    decode_errors: int
    slow_consumer_closes: int
    dropped_events: int
    pack_errors: int
    backplane_published: int
    backplane_received: int
    backplane_dropped_outage: int
    backplane_dropped_queue_full: int
    send_errors: int
    handler_errors: int

    def histograms(self) -> tuple[Histogram, ...]:
        return self.flush_latency, self.reply_latency, self.batch_events

    def rejected(self, config: Any, transport: str, response: Any, *, handshake: bool = True) -> None:
        """Count a refused request by reason (the refusal responses of ``config`` tell which check said no)."""
        if response is NO_CLIENT_ID:
            reason = "no_client_id"
        elif response is config.bad_csrf_response:
            reason = "csrf"
        elif response is config.bad_origin_response:
            reason = "origin"
        elif response is config.unauthorized_response:
            reason = "unauthorized"
        else:
            reason = "reject_fn"
        self.count_rejection(reason)
        if handshake:
            if transport == "ws":
                self.handshakes_ws_rejected += 1
            else:
                self.handshakes_ajax_rejected += 1

    def count_rejection(self, reason: str) -> None:
        name = f"rejected_{reason}"
        setattr(self, name, getattr(self, name) + 1)

    # ------------------------------------------------------------------ flat form (a shared-memory slot)

    def values(self) -> list[float]:
        """Every counter and histogram cell in :meth:`layout` order."""
        out: list[float] = [getattr(self, name) for name in self.COUNTERS]
        for h in self.histograms():
            out.extend(h.counts)
            out.append(h.sum)
        return out

    def load(self, values: Sequence[float]) -> None:
        """Continue from ``values`` (what :meth:`values` gave; a restarted worker's slot)."""
        it = iter(values)
        for name in self.COUNTERS:
            setattr(self, name, int(next(it)))
        for h in self.histograms():
            h.counts = [int(next(it)) for _ in h.counts]
            h.sum = float(next(it))

    @classmethod
    def width(cls) -> int:
        return len(cls.COUNTERS) + sum(h.width for h in cls().histograms())


_COUNTERS = Counters()


def batch_events(packer: Any, data: str | bytes) -> int:
    """How many events a packed batch holds (``[[ev ...] nil]``), for a batch another process flushed.

    Decoded with the packer's C reader (without the str-keys layer), once per batch per worker; 1 if unreadable.
    """
    inner = getattr(packer, "inner", packer)
    try:
        events = inner.unpack(data)[0]
    except Exception:
        return 1
    return len(events) if isinstance(events, list) else 1


def counters() -> Counters:
    """The counters of this process (one object, shared by every server in it)."""
    return _COUNTERS
