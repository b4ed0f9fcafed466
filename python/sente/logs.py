"""Keep Sente's CSRF tokens out of the ASGI servers' logs.

Sente's clients put the token in the URL (``?csrf-token=...`` on the WebSocket upgrade and the Ajax GETs), and
uvicorn's and hypercorn's access logs print request URLs. :func:`redact_csrf_tokens` adds a filter to their
loggers that replaces the token's value with ``[redacted]`` in each record's message and arguments.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

TOKEN = re.compile(r"(csrf-token=)[^&\s\"']+")
LOGGERS = ("uvicorn.access", "uvicorn.error", "hypercorn.access", "hypercorn.error")


def redact(value: Any) -> Any:
    """``value`` with any ``csrf-token=...`` value replaced (strings only; anything else unchanged)."""
    return TOKEN.sub(r"\1[redacted]", value) if isinstance(value, str) and "csrf-token=" in value else value


class RedactCsrfTokens(logging.Filter):
    """Rewrites records whose message or arguments carry ``csrf-token=...``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.msg)
        if isinstance(record.args, MutableMapping):  # hypercorn's atoms: changed in place, keeping their class
            for key, value in list(record.args.items()):
                if isinstance(value, str) and "csrf-token=" in value:
                    record.args[key] = redact(value)
        elif isinstance(record.args, Mapping):
            record.args = {k: redact(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(redact(v) for v in record.args)
        return True


_FILTER = RedactCsrfTokens()


def redact_csrf_tokens() -> None:
    """Install the filter on the ASGI servers' loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
