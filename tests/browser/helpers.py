"""What the browser and Node tests share: our server in a thread, and bounded reading of a child's JSON lines.

The tests need Node with ``js/node_modules`` (``cd js && npm ci``) and, for the browser ones, Debian's
``/usr/bin/chromium``; ``.ci/run`` installs both. Where one is missing locally the tests skip and say why.
"""

from __future__ import annotations

import json
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sente import demo
from tests.sente.conformance.replay import AppThread

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
CHROMIUM = Path("/usr/bin/chromium")
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "playwright-core").is_dir(),
    reason="needs node and js/node_modules (cd js && npm ci)",
)
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")


class AppServer(AppThread):
    """An app on 127.0.0.1 in a thread; a fixed ``port`` to restart on the same one; ``ws=False``: no WebSocket."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def demo_server(port: int = 0, *, ws: bool = True) -> AppServer:
    return AppServer(demo.app(ms_allow_reconnect_before_close_ws=300, lp_timeout_ms=2000), port, ws=ws).start()


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The child's next stdout line that is a JSON object, within ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the child exited ({proc.wait(5)}) without a result")
            if line.startswith("{"):
                obj: dict[str, Any] = json.loads(line)
                return obj
    raise AssertionError(f"no JSON line from the child within {timeout} s")

