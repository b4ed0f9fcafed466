"""Log lines a client can cause, at most one per interval per kind, with a count of those left out.

Why: a warning per bad frame, dropped event or refused request lets one client write gigabytes of log (2.2M lines
from one flooding connection). Each kind of condition is logged at most once per ``interval`` seconds; the next
line that goes out says how many like it were left out meanwhile. The metrics count every one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 10.0


class RateLimitedLog:
    """``log.warning``-like calls keyed by kind: the first goes out, the rest of the interval are counted."""

    __slots__ = ("_clock", "_interval", "_logger", "_state")

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}  # kind -> (when the last line went out, left out since)

    def log(self, level: int, kind: str, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        """Log ``msg % args`` unless a ``kind`` line went out less than ``interval`` ago; True when logged.

        With ``exc_info``, the traceback goes to DEBUG (for a developer who turns it on), never to the line itself.
        """
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        last, left_out = self._state.get(kind, (-self._interval, 0))
        if now - last < self._interval:
            self._state[kind] = (last, left_out + 1)
            return False
        self._state[kind] = (now, 0)
        if left_out:
            msg += " (%d more like it in the last %.0f s)"
            args = (*args, left_out, now - last)
        self._logger.log(level, msg, *args)
        if exc_info is not None and self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("traceback of the above", exc_info=exc_info)
        return True

    def warning(self, kind: str, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.WARNING, kind, msg, *args, exc_info=exc_info)

    def info(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, kind, msg, *args)
