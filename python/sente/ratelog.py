"""Rate-limited warnings: a condition a client (or load) can repeat costs one log line per interval, with a count.

``warn(log, key, msg, *args)`` logs ``msg`` at WARNING the first time ``key`` is seen and then at most once every
:data:`INTERVAL_S` per key; the line that ends a quiet spell says how many were not logged since the last one
(``(+N more in 10 s)``). Keys are a handful of fixed strings (the condition, not the client), so the table stays
small. What must be counted exactly goes to a metric: the log only says that, and why, it keeps happening.
"""

from __future__ import annotations

import logging
import time
from typing import Any

INTERVAL_S = 10.0

_last: dict[str, tuple[float, int]] = {}  # key -> (when last logged, how many suppressed since)


def warn(log: logging.Logger, key: str, msg: str, *args: Any, exc_info: BaseException | None = None) -> None:
    """Log ``msg % args`` at WARNING unless ``key`` was logged less than :data:`INTERVAL_S` ago (then count it).

    With ``exc_info``, the traceback goes to DEBUG (for a developer who turns it on), never to the warning line.
    """
    now = time.monotonic()
    last = _last.get(key)
    if last is not None and now - last[0] < INTERVAL_S:
        _last[key] = (last[0], last[1] + 1)
        return
    _last[key] = (now, 0)
    if last is not None and last[1]:
        msg += " (+%d more in %.0f s)"
        args = (*args, last[1], now - last[0])
    log.warning(msg, *args)
    if exc_info is not None and log.isEnabledFor(logging.DEBUG):
        log.debug("traceback of the above", exc_info=exc_info)
