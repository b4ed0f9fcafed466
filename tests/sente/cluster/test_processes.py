"""Several processes without ``sente serve``'s supervisor, and Sente mounted where only ``sente serve`` starts it.

* ``uvicorn --workers 2`` of an app with neither a shared session secret nor a backplane: each worker says at
  startup what breaks and what to do; with ``SENTE_SESSION_SECRET`` and a Redis (the documented recipe) the
  workers share sessions and pushes.
* Nodes whose session secrets differ: the later one logs an error naming the mismatch.
* ``sente serve --workers 2`` of a FastAPI app that mounts Sente without its lifespan: broadcasts still cross
  workers (the worker starts the backplane itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sente.client import Client, connect
from sente.edn import Keyword
from sente.server import ChannelSocketServer
from sente.sessions import SignedCookieSessions
from tests.helpers import stop
from tests.sente.cluster.test_redis import RedisServer, free_port, running_redis

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 45.0  # two workers importing FastAPI on a busy 2-core machine
SAYS_WHAT_TO_DO = "Run `sente serve --workers N APP`, or give every worker the same SENTE_SESSION_SECRET"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


class Output:
    """A process's merged output, read straight from the pipe (no buffered lines hidden from select)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.text = proc, ""

    def wait_for(self, needle: str, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while self.text.count(needle) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"no {needle!r} within {timeout} s in: {self.text[-3000:]}"
                if sel.select(min(left, 0.5)):
                    chunk = os.read(fd, 65536)
                    assert chunk, f"the process ended without {needle!r}: {self.text[-3000:]}"
                    self.text += chunk.decode(errors="replace")


@contextlib.contextmanager
def process(argv: list[str], **env: str) -> Iterator[Output]:
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield Output(proc)
    finally:
        stop(proc)
        if proc.stdout:
            proc.stdout.close()


def uvicorn_workers(port: int) -> list[str]:
    return ["-m", "uvicorn", "examples.plain_asgi:app", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]


async def next_event(client: Client, event_id: str) -> object:
    while True:
        msg = await client.next_event(5.0)
        if msg.id == Keyword(event_id):
            return msg.data


def test_uvicorn_workers_without_shared_state_say_what_to_do_at_startup() -> None:
    with process(uvicorn_workers(free_port()), SENTE_SESSION_SECRET="", SENTE_REDIS_URL="") as out:
        out.wait_for(SAYS_WHAT_TO_DO, count=2)  # each worker
    assert "its sessions in memory" in out.text


def test_uvicorn_workers_with_a_shared_secret_and_redis_share_sessions_and_pushes(redis_server: RedisServer) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def chat() -> None:
        clients: list[Client] = []
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
                contextlib.AsyncExitStack() as stack:
            for n in range(6):  # new connections, spread by the kernel over the two workers' accept calls
                async with http.get(f"{base}/login", params={"uid": f"u{n}"}) as r:
                    token, cookie = await r.text(), r.headers["Set-Cookie"].split(";")[0]
                # WebSockets: each worker is a node of its own, and Ajax needs a client's requests kept on one node
                # (sticky sessions), which uvicorn's shared socket cannot do (README: several processes)
                clients.append(await stack.enter_async_context(
                    connect(f"{base}/chsk", type="ws", csrf_token=token, headers={"Cookie": cookie})))
            assert [c.state.uid for c in clients] == [f"u{n}" for n in range(6)]
            clients[0].send(["chat/say", {"text": "hi all"}])
            got = await asyncio.gather(*(next_event(c, "chat/said") for c in clients), return_exceptions=True)
            assert got == [{"from": "u0", "text": "hi all"}] * 6, got

    with process(uvicorn_workers(port), SENTE_SESSION_SECRET="s" * 32, SENTE_REDIS_URL=redis_server.url) as out:
        out.wait_for("Application startup complete", count=2)
        asyncio.run(asyncio.wait_for(chat(), 30))
    assert SAYS_WHAT_TO_DO not in out.text


def test_a_node_whose_session_secret_differs_from_the_clusters_logs_an_error(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        prefix = f"secret-{os.getpid()}-{time.monotonic_ns()}"
        nodes = []
        for secret in ("a" * 32, "a" * 32, "b" * 32):
            server = ChannelSocketServer(sessions=SignedCookieSessions(secret), redis_url=redis_server.url)
            server.core.backplane.link.prefix = prefix  # type: ignore[attr-defined]
            server.start()
            nodes.append(server)
            for _ in range(300):
                if server.core.backplane.link.active:  # type: ignore[attr-defined]
                    break
                await asyncio.sleep(0.01)
        for server in nodes:
            await server.stop()

    with caplog.at_level(logging.ERROR, "sente.cluster.redis"):
        asyncio.run(asyncio.wait_for(run(), 20))
    errors = [r.getMessage() for r in caplog.records if "session secret differs" in r.getMessage()]
    assert len(errors) == 1, errors  # the third node only


def test_sente_serve_workers_start_a_mounted_server_so_broadcasts_cross_workers() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/chsk"

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            by_pid: dict[int, Client] = {}
            for n in range(40):  # until two clients sit on different workers
                client = await stack.enter_async_context(connect(url, type="ws", params={"uid": f"u{n}"}))
                by_pid.setdefault((await client.request(["test/whoami", None], timeout=5))["pid"], client)
                if len(by_pid) == 2:
                    break
            assert len(by_pid) == 2, "every connection landed on one worker"
            first, second = by_pid.values()
            first.send(["test/shout", "across"])
            for client in (first, second):
                assert await next_event(client, "test/shouted") == "across"

    argv = ["-m", "sente", "serve", "tests.sente.stack_apps:fastapi_mounted", "--workers", "2", "--port", str(port)]
    with process(argv) as out:
        out.wait_for("sente: serving")
        out.wait_for("the ASGI lifespan did not reach the Sente server", count=2)
        asyncio.run(asyncio.wait_for(run(), 30))
