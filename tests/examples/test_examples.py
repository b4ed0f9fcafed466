"""The examples of examples/ on real ASGI servers (uvicorn, hypercorn, granian), driven by our own client.

Each example runs in its own server process, at ``/`` and mounted at ``/sub`` (``tests/examples/served.py``).
Against each: two users log in through the example's login route (the uid and CSRF token come from the app's
session), one connects over WebSocket and one over Ajax long-polling; a request gets its reply, a chat message
reaches both, and (FastAPI) a sync route's push reaches its user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sente.client import Client, connect
from sente.edn import Keyword
from tests.helpers import stop

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 45.0  # a server process importing its app on a busy 2-core machine
TEST_TIMEOUT = 30.0
LOGIN = {"fastapi_app": "POST", "starlette_app": "GET", "plain_asgi": "GET"}
SERVERS = {
    "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "{app}"],
    "hypercorn": ["-m", "hypercorn", "--bind", "127.0.0.1:{port}", "{app}"],
    "granian": ["-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
                "--workers", "1", "--log-level", "warning", "{app}"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(server: str, example: str) -> Iterator[int]:
    """``server`` serving ``tests.examples.served:<example>`` on a free port, until the block ends."""
    port = free_port()
    argv = [a.format(port=port, app=f"tests.examples.served:{example}") for a in SERVERS[server]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SESSION_SECRET": "examples-test-secret"}
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise AssertionError(f"{server} did not start {example}: {out[-2000:]}")
            time.sleep(0.05)
        yield port
    finally:
        stop(proc)
        if proc.stdout:
            proc.stdout.close()


async def login(http: aiohttp.ClientSession, base: str, example: str, uid: str) -> dict[str, Any]:
    """The example's login: the session cookie and the CSRF token, as client options."""
    async with http.request(LOGIN[example], f"{base}/login", params={"uid": uid}) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["csrf_token"] if r.content_type == "application/json" else await r.text()
        cookie = r.headers["Set-Cookie"].split(";")[0]
    return {"csrf_token": token, "headers": {"Cookie": cookie}}


async def next_event(client: Client, event_id: str) -> Any:
    while True:
        msg = await client.next_event(5.0)
        if msg.id == Keyword(event_id):
            return msg.data


async def chat(port: int, prefix: str, example: str) -> None:
    base = f"http://127.0.0.1:{port}{prefix}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        alice, bob = await login(http, base, example, "alice"), await login(http, base, example, "bob")
        async with connect(f"{base}/chsk", type="ws", **alice) as ws, \
                connect(f"{base}/chsk", type="ajax", **bob) as ajax:
            assert (ws.state.type, ws.state.uid) == ("ws", "alice")
            assert (ajax.state.type, ajax.state.uid) == ("ajax", "bob")
            assert await ws.request(["chat/whoami", {"n": 1}], timeout=5) == {"uid": "alice", "echo": {"n": 1}}
            assert await ajax.request(["chat/whoami", {"n": 2}], timeout=5) == {"uid": "bob", "echo": {"n": 2}}
            ws.send(["chat/say", {"text": "hi"}])
            for client in (ws, ajax):
                assert await next_event(client, "chat/said") == {"from": "alice", "text": "hi"}
            if example == "fastapi_app":  # a sync route pushes from FastAPI's threadpool
                async with http.post(f"{base}/notify/bob", params={"text": "ping"}) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["delivered"] is True
                assert await next_event(ajax, "chat/notice") == {"text": "ping"}


@pytest.mark.parametrize("example", list(LOGIN))
@pytest.mark.parametrize("server", list(SERVERS))
def test_example_serves_ws_and_ajax_at_the_root_and_under_a_mount(server: str, example: str) -> None:
    with server_process(server, example) as port:
        for prefix in ("", "/sub"):
            asyncio.run(asyncio.wait_for(chat(port, prefix, example), TEST_TIMEOUT))
