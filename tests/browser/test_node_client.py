"""sente.js in Node 20 (``node --test js/test/*.test.mjs``) against our server running the reference test app.

The Node tests compare what sente.js sends with the c2s records of ../shared/vectors/wire (ws-handshake,
ws-echo-reply, ws-client-ping, ajax-handshake, ajax-echo-reply, transit-*) and exercise its behaviour over
WebSocket and Ajax; this test starts the server, runs them with its URL in ``SENTE_URL``, and asserts they pass.
"""

from __future__ import annotations

import os
import re
import subprocess

from sente import testapp
from tests.browser.helpers import JS, NODE, AppServer, needs_node
from tests.vectors import VECTORS

pytestmark = needs_node


def test_sente_js_in_node() -> None:
    assert NODE is not None
    server = AppServer(testapp.app(lp_timeout_ms=1000, ms_allow_reconnect_before_close_ws=300)).start()
    env = {**os.environ, "SENTE_URL": server.base, "SENTE_VECTORS": str(VECTORS / "wire")}
    try:
        done = subprocess.run(
            [NODE, "--test", "test/codec.test.mjs", "test/msgpack.test.mjs", "test/client.test.mjs"], cwd=JS, env=env,
            text=True,
            capture_output=True, timeout=120,
        )
    finally:
        server.stop()
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    passed = re.search(r"^# pass (\d+)$", report, re.M)
    assert passed is not None and int(passed.group(1)) >= 19, report[-2000:]
    assert re.search(r"^# skipped 0$", report, re.M), "no Node test may skip here"
