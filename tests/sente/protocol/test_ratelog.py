"""Client-caused log lines: one per kind per interval, the next one counting those left out."""

from __future__ import annotations

import logging

import pytest

from sente.protocol.ratelog import RateLimitedLog


def test_one_line_per_kind_per_interval_then_the_count_of_those_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.ratelog"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "test.ratelog"):
        assert log.warning("a", "bad frame from %r", "x\ny")
        for _ in range(999):
            assert not log.warning("a", "bad frame from %r", "z")
        assert log.warning("b", "another kind")  # kinds are limited apart
        now[0] = 10.5
        assert log.warning("a", "bad frame from %r", "w")
        now[0] = 30.0
        assert log.info("a", "quiet again")
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame from 'x\\ny'",
        "another kind",
        "bad frame from 'w' (999 more like it in the last 10 s)",
        "quiet again",
    ]


def test_nothing_is_counted_below_the_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelog.quiet"))
    with caplog.at_level(logging.ERROR, "test.ratelog.quiet"):
        assert not log.warning("a", "dropped")
    assert caplog.records == []
