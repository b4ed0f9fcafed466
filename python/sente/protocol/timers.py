"""What the sans-I/O cores (``protocol.client`` and ``protocol.server``) share: their timer heap and action queue.

A timer is ``(when, kind, target, conn)``; when due it calls ``owner._on_<kind>(target, conn, now)``.
Timers are never cancelled: they are invalidated lazily, the handler comparing ``conn`` (a connection
number or generation) with the current one and ignoring a stale timer.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Generic, TypeVar

A = TypeVar("A")


class Timers:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Any, int]] = []
        self._seq = itertools.count()  # ties at the same ``when`` fire in the order scheduled

    def schedule(self, when: float, kind: str, target: Any, conn: int = 0) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, target, conn))

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self, owner: object, now: float) -> None:
        """Fire every timer due at ``now``, including those the handlers schedule for ``now`` or earlier."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, target, conn = heapq.heappop(heap)
            getattr(owner, f"_on_{kind}")(target, conn, now)


class SansIOCore(Generic[A]):
    """The driver-facing half of a core: ``take_actions``, ``next_deadline`` and ``tick`` (the core's timers)."""

    def __init__(self) -> None:
        self._actions: list[A] = []
        self._timers = Timers()

    def take_actions(self) -> list[A]:
        """The actions queued since the last call, in order."""
        actions, self._actions = self._actions, []
        return actions

    def has_actions(self) -> bool:
        """Whether ``take_actions`` would return any (a driver can skip its pump when not)."""
        return bool(self._actions)

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called (None: nothing scheduled)."""
        return self._timers.next_deadline()

    def tick(self, now: float) -> None:
        """Run every timer due at ``now``."""
        self._timers.run_due(self, now)

    def _emit(self, action: A) -> None:
        self._actions.append(action)
