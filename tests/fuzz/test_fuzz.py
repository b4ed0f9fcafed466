"""The fuzzing harness in CI: ``sente serve tests.fuzz.app:app --workers 2`` under mutated and random WebSocket
frames, Ajax requests and HTTP heads (:mod:`tests.fuzz.harness`) while healthy clients receive a numbered
broadcast stream. Passes when the server stays up (no worker restarted, both ready), every healthy client got
the whole stream once and in order, and the log holds no traceback and no ERROR line.

About 40 s by default; ``CSENTE_FUZZ_SECONDS=600`` runs longer, ``CSENTE_FUZZ_SEED=N`` replays a run (the seed
is printed); ``python -m tests.fuzz --seconds 600`` runs it outside pytest.
"""

from __future__ import annotations

import asyncio
import re

from sente.cluster.supervisor import ClusterStats
from tests.fuzz.harness import Report, env_seconds, env_seed, fuzz
from tests.sente.cluster.test_supervisor import Cluster, cluster, wait_ready

APP = "tests.fuzz.app:app"
CI_SECONDS = 40.0


def check(c: Cluster, report: Report) -> None:
    """What a fuzzing run must leave behind (raises AssertionError naming the first thing wrong)."""
    assert c.proc.poll() is None, f"the supervisor exited: {report.summary()}"
    stats = ClusterStats.attach(c.shm)
    try:
        assert stats.restarts_total == 0, f"a worker restarted: {report.summary()}\n{c.log()[-5000:]}"
    finally:
        stats.close()
    asyncio.run(wait_ready(c.port, {0, 1}, timeout=10))
    assert not report.problems, f"{report.summary()}: {report.problems}"
    log = c.log()
    assert "Traceback" not in log, log[-20000:]
    errors = [line for line in log.splitlines() if re.search(r" (ERROR|CRITICAL) ", line)]
    assert not errors, errors[:20]


def test_the_server_survives_fuzzing_and_healthy_clients_lose_nothing() -> None:
    seed = env_seed()
    print(f"fuzz seed {seed} (CSENTE_FUZZ_SEED={seed} replays it)")
    with cluster(APP, "--log-level", "warning") as c:
        report = asyncio.run(fuzz(c.port, env_seconds(CI_SECONDS), seed))
        print(report.summary())
        assert sum(report.sent.values()) > 100, report.summary()
        check(c, report)
