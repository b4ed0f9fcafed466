"""In CI every real component the suite uses must be there: a test skipped for a missing tool would hide a requirement.

Locally, tests that need Debian's chromium, Node with js/node_modules, Prometheus, redis-server, the other
supported Pythons or ../shared skip with the reason when it is absent. With ``CI`` set (``.ci/run`` installs
them all), a missing one stops the run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.packaging.pythons import SUPPORTED, interpreter

REPO = Path(__file__).resolve().parent.parent
REQUIRED_IN_CI = {
    "../shared beside the checkout (the golden vectors)": lambda: (REPO.parent / "shared" / "vectors").is_dir(),
    "chromium (apt-get install chromium)": lambda: Path("/usr/bin/chromium").exists(),
    "node and js/node_modules (cd js && npm ci)": lambda: shutil.which("node") is not None
    and (REPO / "js" / "node_modules" / "playwright-core").is_dir(),
    "prometheus and promtool (apt-get install prometheus)": lambda: shutil.which("prometheus") is not None
    and shutil.which("promtool") is not None,
    "redis-server (apt-get install redis-server)": lambda: shutil.which("redis-server") is not None,
    f"Pythons {', '.join(SUPPORTED)} for the wheel tests (pyenv)": lambda: all(map(interpreter, SUPPORTED)),
}


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        missing = [name for name, present in REQUIRED_IN_CI.items() if not present()]
        if missing:
            raise pytest.UsageError("CI is missing what the suite needs: " + "; ".join(missing))
