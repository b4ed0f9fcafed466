"""``sente demo`` from the command line: the broker (2 workers) starts, prints its URL, serves the page and sente.js."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.helpers import stop


def test_sente_demo_serves_the_page_and_the_client() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sente", "demo", "--port", "0"], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        url, page = None, ""
        for _ in range(50):  # the hint line, then the broker's startup line with the URL
            line = proc.stdout.readline()
            if m := re.search(r"serving sente\.demo:app on (http://127\.0\.0\.1:\d+) .*2 workers", line):
                url = m.group(1)
                break
            assert line, "sente demo exited"
        assert url is not None
        for _ in range(100):  # the workers may still be binding: 10 s at most
            try:
                with urllib.request.urlopen(url + "/", timeout=10) as r:
                    page = r.read().decode()
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        assert "csente demo" in page
        with urllib.request.urlopen(url + "/sente.js", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/javascript") and b"export" in r.read()
    finally:
        stop(proc)
