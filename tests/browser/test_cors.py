"""CORS in a real browser: a page served on one port talks to Sente's Ajax endpoint on another.

The Sente server lists the page's origin in ``allowed_origins``; headless Chromium (``js/test/cors-driver.mjs``)
fetches the CSRF token, an Ajax handshake and an event POST with credentials and an ``X-CSRF-Token`` header, so
every request but the first is preceded by a preflight. From the allowed origin each response is readable (the
session cookie travelled: the CSRF check passed); from another origin the browser blocks them all.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sente.app import SenteApp
from sente.protocol.server import EventMsg
from sente.server import ChannelSocketServer
from tests.browser.helpers import JS, NODE, AppServer, needs_chromium, needs_node, read_json_line
from tests.helpers import stop

pytestmark = [needs_node, needs_chromium]
PAGE = b"<!doctype html><title>elsewhere</title><p>a page served elsewhere"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def page_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sente_app(allowed: str) -> SenteApp:
    chsk = ChannelSocketServer(user_id_fn=lambda request: request.param("uid"), allowed_origins={allowed})

    @chsk.on("test/echo")
    def echo(msg: EventMsg) -> None:
        if msg.reply is not None:
            msg.reply({"echo": msg.data, "uid": msg.uid})

    return SenteApp(chsk, chsk.asgi(csrf_token_path="/csrf-token"))


def drive(page: str, base: str) -> dict[str, str]:
    proc = subprocess.Popen([NODE or "node", str(JS / "test" / "cors-driver.mjs"), page, base], cwd=JS,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = read_json_line(proc, 60)
    finally:
        stop(proc)
    assert "result" in line, line
    result: dict[str, str] = line["result"]
    return result


def test_a_page_on_an_allowed_origin_reads_token_handshake_and_reply_across_origins() -> None:
    with page_server() as allowed, page_server() as other:
        server = AppServer(sente_app(allowed)).start()
        try:
            ok = drive(allowed + "/", server.base)
            refused = drive(other + "/", server.base)
        finally:
            server.stop()
    assert ok["origin"] == allowed
    assert ok["token"].startswith("200 ") and len(ok["token"]) > 40, ok
    assert ok["handshake"] == '200 [[:chsk/handshake ["alice" nil nil]] nil]', ok
    assert ok["post"] == '200 [{:echo {:from :page}, :uid "alice"} nil]', ok
    assert all(refused[step].startswith("blocked: TypeError") for step in ("token", "handshake", "post")), refused
