"""A sans-I/O core's next deadline as one asyncio timer: how the server and the client run their cores' clocks.

Both cores count time in milliseconds of the event loop's own clock (``loop.time() * 1000``) and say when they
next need ``tick``; after every batch of actions their driver re-arms this timer, which keeps at most one
loop timer per core and only moves it when the deadline changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LoopTimer:
    """Calls ``on_due`` on ``loop()`` once the armed deadline (ms, loop clock) is reached."""

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop], on_due: Callable[[], None]) -> None:
        self._loop = loop
        self._on_due = on_due
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` instead of any earlier arming; None disarms."""
        if deadline == self._at:
            return
        self.cancel()
        self._at = deadline
        if deadline is not None:
            self._handle = self._loop().call_at(deadline / 1000.0, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._at = None

    def _fire(self) -> None:
        self._handle = self._at = None
        self._on_due()
