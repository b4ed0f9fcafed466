"""The benchmark payloads: a realistic ~1 KB Sente event and a push batch of 100, built for each library.

Every library gets the same logical value in its own types (keywords as that library's keyword type,
or as plain strings for msgspec.json, our speed ceiling on the equivalent JSON value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BATCH_SIZE = 100


def event(i: int, kw: Callable[[str], Any]) -> list[Any]:
    """One market-data style event, about 1 KB in edn: keywords, strings, ints, floats, nested vectors."""
    return [
        kw("market/tick"),
        {
            kw("symbol"): "AAPL",
            kw("venue"): "XNAS",
            kw("seq"): 1_000_000 + i,
            kw("ts"): 1_732_780_800_123 + i,
            kw("bid"): 189.52,
            kw("ask"): 189.55,
            kw("last"): 189.53,
            kw("volume"): 12_345_678,
            kw("halted"): False,
            kw("bids"): [[round(189.52 - n * 0.01, 2), 100 * (n + 1)] for n in range(10)],
            kw("asks"): [[round(189.55 + n * 0.01, 2), 120 * (n + 1)] for n in range(10)],
            kw("tags"): ["equity", "nasdaq", "tech", "large-cap"],
            kw("meta"): {
                kw("source"): "feed-3",
                kw("region"): "us-east",
                kw("latency-us"): 412,
                kw("note"): "opening auction complete; \"quoted\" text and unicode: café ✓",
            },
        },
    ]


def batch(kw: Callable[[str], Any]) -> list[Any]:
    """A push batch as it sits inside the envelope: ``[[ev1 ev2 ...] nil]``."""
    return [[event(i, kw) for i in range(BATCH_SIZE)], None]
