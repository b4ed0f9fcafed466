"""``python -m tests.fuzz [--seconds S] [--seed N]``: the fuzzing harness outside pytest, against a fresh
``sente serve tests.fuzz.app:app --workers 2`` on a free port; prints the report and exits 1 on a failure."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.fuzz.harness import env_seed, fuzz
from tests.fuzz.test_fuzz import APP, check
from tests.sente.cluster.test_supervisor import cluster


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else env_seed()
    with cluster(APP, "--log-level", "warning") as c:
        report = asyncio.run(fuzz(c.port, args.seconds, seed))
        print(report.summary())
        try:
            check(c, report)
        except AssertionError as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
    print("ok: the server stayed up, healthy clients lost nothing, no traceback or ERROR logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
