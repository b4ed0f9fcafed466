"""The demo page in Debian's headless chromium, driven by js/test/browser-driver.mjs (playwright-core).

Why a Node driver rather than CDP from Python: playwright-core is a pinned npm package that drives the
system chromium (``executablePath``, no browser download), with waiting, contexts (one cookie jar per
user) and screenshots built in; pytest only starts our server, spawns the driver with a timeout, and reads
its JSON lines. Covered: two users in two contexts connect, see each other, exchange broadcasts and get a
reply; the same over Ajax when the server refuses WebSocket upgrades; a page reconnects (fresh CSRF token)
after the server restarts on the same port.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.browser.helpers import (
    JS,
    NODE,
    ROOT,
    demo_server,
    needs_chromium,
    needs_node,
    read_json_line,
)
from tests.helpers import stop

pytestmark = [needs_node, needs_chromium]
DRIVER_TIMEOUT = 60.0


def driver(*args: str) -> subprocess.Popen[str]:
    assert NODE is not None
    return subprocess.Popen(
        [NODE, str(JS / "test" / "browser-driver.mjs"), *args], cwd=JS, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out = read_json_line(proc, DRIVER_TIMEOUT)
    assert "error" not in out, out["error"]
    value: dict[str, Any] = out["result"]
    return value


def check_chat(r: dict[str, Any], transport: str) -> None:
    blocked_ws = "WebSocket connection to"  # chromium logs the refused upgrade before the Ajax fallback
    assert [e for e in r["errors"] if transport == "ws" or blocked_ws not in e] == []
    for user in ("alice", "bob"):
        assert r[user]["open"] and r[user]["uid"] == user and r[user]["type"] == transport
    assert {"alice", "bob"} <= set(r["users"])
    assert ["alice", "hello from alice"] in r["said"] and ["bob", "hi alice, bob here"] in r["said"]
    assert r["reply"]["uid"] == "alice" and r["reply"]["answer"].startswith("hello alice")


def test_two_pages_chat_and_reply_over_websocket(tmp_path: Path) -> None:
    server = demo_server()
    shot = tmp_path / "demo.png"
    proc = driver("chat", server.base, str(shot))
    try:
        check_chat(result(proc), "ws")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("SENTE_UPDATE_SCREENSHOT"):  # refresh the README's picture
            (ROOT / "docs").mkdir(exist_ok=True)
            (ROOT / "docs" / "demo.png").write_bytes(shot.read_bytes())
    finally:
        stop(proc)
        server.stop()


def test_ajax_fallback_when_websocket_is_blocked() -> None:
    server = demo_server(ws=False)
    proc = driver("chat", server.base)
    try:
        check_chat(result(proc), "ajax")
    finally:
        stop(proc)
        server.stop()


def test_page_reconnects_after_a_server_restart() -> None:
    server = demo_server()
    port = server.port
    proc = driver("restart", server.base)
    try:
        assert read_json_line(proc, DRIVER_TIMEOUT) == {"wait": "restart"}
        server.stop()
        server = demo_server(port)  # a new process would lose the sessions too: the page fetches a new token
        assert proc.stdin is not None
        proc.stdin.write("restarted\n")
        proc.stdin.flush()
        r = result(proc)
        # refused connections and 403s (stale session) while the server was away are logged by chromium
        assert [e for e in r["errors"] if "console:" not in e] == []
        assert r["before"]["opens"] == 1 and r["after"]["opens"] >= 2 and r["after"]["open"]
    finally:
        stop(proc)
        server.stop()
