"""``sente serve APP --workers 2`` with real processes on 127.0.0.1: start, health, spread, restart, reclaim, drain.

Every wait is bounded in count and time. Whatever happens, each test kills the supervisor and every worker it saw
(pids from the cluster's stats file) and unlinks whatever the supervisor left in /dev/shm.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from csente.shm import SharedState
from sente.cluster.backplane import uid_key
from sente.cluster.supervisor import ClusterStats
from sente.edn import Keyword
from sente.packers import EdnPacker
from sente.serve import Health, health_routes
from tests.sente.conformance.replay import client_frame, header, read_frame, read_http_response
from tests.sente.test_serve import free_port, read_line

REPO = Path(__file__).resolve().parents[3]
SHM = "/dev/shm"
START_TIMEOUT = 20.0
IO_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = 5.0
RESTART_WITHIN = 10.0
"""A liveness bound, not a speed claim (these machines are shared): the restart time is printed, not asserted."""
EDN = EdnPacker()


# ---------------------------------------------------------------------- a cluster in a subprocess


@dataclass
class Cluster:
    proc: subprocess.Popen[str]
    port: int
    shm: str
    stderr: Any
    worker_pids: set[int] = field(default_factory=set)

    def log(self) -> str:
        self.stderr.seek(0)
        return str(self.stderr.read())

    def note_workers(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            stats = ClusterStats.attach(self.shm)
            try:
                self.worker_pids.update(p for p in (stats.worker_pid(i) for i in range(stats.workers)) if p)
            finally:
                stats.close()


@contextlib.contextmanager
def cluster(app: str, *args: str) -> Iterator[Cluster]:
    port = free_port()
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in the finally below, after the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "sente", "serve", app, "--workers", "2", "--port", str(port), "--log-level", "warning",
         "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    c = Cluster(proc, port, "", stderr)
    try:
        first = read_line(proc, START_TIMEOUT)
        m = re.search(r"shm (sente-\d+-[0-9a-f]{8})", first)
        assert m is not None, first
        c.shm = m.group(1)
        asyncio.run(wait_ready(port, {0, 1}, proc=proc))
        c.note_workers()
        yield c
    finally:
        c.note_workers()
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)
        for pid in c.worker_pids:
            with contextlib.suppress(OSError):
                if b"sente.cluster.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        for entry in os.listdir(SHM):
            if entry.startswith(f"sente-{proc.pid}-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(SHM, entry))
        assert proc.stdout is not None
        proc.stdout.close()
        stderr.close()


# ---------------------------------------------------------------------- one HTTP/1.1 connection


class Conn:
    """One TCP connection: keep-alive HTTP requests, then maybe a WebSocket upgrade on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
        return cls(reader, writer, port)

    def send_request(self, target: str, headers: dict[str, str] | None = None) -> None:
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def response(self, timeout: float = IO_TIMEOUT) -> tuple[int, list[tuple[str, str]], bytes]:
        _, status, _, headers, body = await asyncio.wait_for(read_http_response(self.reader), timeout)
        return status, headers, body

    async def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        self.send_request(target, headers)
        return await self.response()

    async def upgrade(self, target: str, headers: dict[str, str] | None = None) -> bytes:
        """Open a WebSocket; the first frame (Sente's handshake)."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.send_request(target, {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                   "Sec-WebSocket-Key": key, **(headers or {})})
        status, _, _ = await self.response()
        assert status == 101, status
        opcode, payload = await self.frame()
        assert opcode == 0x1
        return payload

    async def frame(self, timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
        _, opcode, payload = await asyncio.wait_for(read_frame(self.reader), timeout)
        return opcode, payload

    async def call(self, event: list[Any], timeout: float = IO_TIMEOUT) -> Any:
        """Send ``event`` with a callback id over the WebSocket; the reply (pings and pushes skipped)."""
        cb = os.urandom(4).hex()
        self.writer.write(client_frame(0x1, str(EDN.pack_envelope(event, cb)).encode()))
        deadline = time.monotonic() + timeout
        for _ in range(100):
            opcode, payload = await self.frame(max(0.01, deadline - time.monotonic()))
            if opcode == 0x1:
                reply, reply_cb = EDN.unpack_envelope(payload.decode())
                if reply_cb == cb:
                    return reply
        raise AssertionError("no reply")

    def close(self) -> None:
        self.writer.close()


async def get_once(port: int, target: str) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = await Conn.open(port)
    try:
        return await conn.get(target, {"Connection": "close"})
    finally:
        conn.close()


async def readyz(port: int) -> dict[str, Any] | None:
    """One /readyz on a new connection: its JSON body when 200, else None."""
    with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        status, headers, body = await get_once(port, "/readyz")
        if status == 200:
            data: dict[str, Any] = json.loads(body)
            assert header(headers, "x-sente-worker") == str(data["worker"])
            return data
    return None


async def wait_ready(port: int, workers: set[int], *, timeout: float = START_TIMEOUT,
                     not_pid: int | None = None, proc: subprocess.Popen[str] | None = None) -> dict[int, int]:
    """Poll /readyz on new connections until every index in ``workers`` answered; {index: pid}."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    for _ in range(5000):
        data = await readyz(port)
        if data is not None and data["pid"] != not_pid:
            seen[data["worker"]] = data["pid"]
        if workers <= seen.keys() or time.monotonic() > deadline:
            break
        assert proc is None or proc.poll() is None, f"the supervisor exited with {proc.returncode}"
        await asyncio.sleep(0.01)
    assert workers <= seen.keys(), f"ready: {seen}, wanted {workers}"
    return seen


WHOAMI = re.compile(r"worker=(\d+) pid=(\d+) closed=(.*)")


async def ws_client(port: int, uid: str, *, cookie: str = "", token: str = "") -> Conn:
    conn = await Conn.open(port)
    query = {"client-id": f"tab-{uid}", "uid": uid, **({"csrf-token": token} if token else {})}
    handshake = await conn.upgrade(f"/chsk?{urlencode(query)}", {"Cookie": cookie} if cookie else {})
    assert EDN.unpack_envelope(handshake.decode()).payload[0] == Keyword("chsk/handshake")
    return conn


async def whoami(conn: Conn) -> tuple[int, int, list[str]]:
    m = WHOAMI.fullmatch(await conn.call([Keyword("test/whoami"), None]))
    assert m is not None
    return int(m.group(1)), int(m.group(2)), [u for u in m.group(3).split(",") if u]


def segments(supervisor_pid: int) -> list[str]:
    return [e for e in os.listdir(SHM) if e.startswith(f"sente-{supervisor_pid}-")]


# ---------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def registry_cluster() -> Iterator[Cluster]:
    with cluster("tests.sente.cluster.registry_app:app", "--json-logs") as c:
        yield c


def test_two_workers_answer_health_and_share_the_port(registry_cluster: Cluster) -> None:
    async def run() -> None:
        status, headers, body = await get_once(registry_cluster.port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        assert header(headers, "x-sente-pid") == str(json.loads(body)["pid"])
        seen = [await readyz(registry_cluster.port) for _ in range(40)]
        workers = {d["worker"] for d in seen if d is not None}
        assert workers == {0, 1}, seen  # 40 new connections: the kernel spread them over both
        assert all(d is not None and d["status"] == "ready" for d in seen)

    asyncio.run(run())
    assert segments(registry_cluster.proc.pid), "the shared segment exists while the cluster runs"


def test_ws_and_ajax_handshakes_work_on_the_cluster(registry_cluster: Cluster) -> None:
    async def run() -> None:
        ws = await ws_client(registry_cluster.port, "hs-ws")
        try:
            assert await ws.call([Keyword("test/echo"), {Keyword("a"): 1}]) == {Keyword("a"): 1}
        finally:
            ws.close()
        ajax = await Conn.open(registry_cluster.port)
        try:
            status, _, body = await ajax.get("/chsk?" + urlencode({"client-id": "ajax-1", "uid": "hs-ajax",
                                                                   "handshake?": "true"}))
            assert status == 200
            payload = EDN.unpack_envelope(body.decode()).payload
            assert payload[0] == Keyword("chsk/handshake") and payload[1][0] == "hs-ajax"
        finally:
            ajax.close()

    asyncio.run(run())


def test_a_killed_worker_is_reclaimed_and_back(registry_cluster: Cluster) -> None:
    c = registry_cluster
    observer = SharedState.attach(c.shm, None)
    stats = ClusterStats.attach(c.shm)
    try:
        asyncio.run(_kill_and_watch(c, observer, stats))
    finally:
        observer.close()
        stats.close()


async def _kill_and_watch(c: Cluster, observer: SharedState, stats: ClusterStats) -> None:
    clients: dict[int, list[tuple[str, Conn]]] = {0: [], 1: []}
    pids: dict[int, int] = {}
    try:
        for n in range(40):  # new connections until both workers hold at least two
            uid = f"k{n}"
            conn = await ws_client(c.port, uid)
            index, pid, _ = await whoami(conn)
            clients[index].append((uid, conn))
            pids[index] = pid
            if min(len(v) for v in clients.values()) >= 2:
                break
        assert min(len(v) for v in clients.values()) >= 2, {k: len(v) for k, v in clients.items()}
        every = {uid_key(uid) for held in clients.values() for uid, _ in held}
        assert every <= set(observer.connected_uids())
        victim, survivor = 1, 0
        old = pids[victim]
        restarts_before = stats.restarts(victim)

        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        back = await wait_ready(c.port, {victim}, timeout=RESTART_WITHIN, not_pid=old)
        took = time.monotonic() - killed
        c.note_workers()
        assert back[victim] != old
        print(f"worker {victim} back after {took:.2f} s")

        assert stats.restarts(victim) == restarts_before + 1
        assert stats.restarts_total >= 1
        assert stats.worker_pid(victim) == back[victim]
        gone = {uid_key(uid) for uid, _ in clients[victim]}
        kept = {uid_key(uid) for uid, _ in clients[survivor]}
        registry = set(observer.connected_uids())
        assert not gone & registry, "the killed worker's uids left the registry"
        assert kept <= registry
        for _uid, conn in clients[survivor]:  # still connected, still served by the same process
            index, pid, closed = await whoami(conn)
            assert (index, pid) == (survivor, pids[survivor])
        assert {uid_key(u) for u in closed} >= gone, "the survivor fired uidport-close for the reclaimed uids"
        for _uid, conn in clients[victim]:  # the kernel closed the dead worker's sockets
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                await conn.frame(IO_TIMEOUT)
        records = [json.loads(line) for line in c.log().splitlines()]  # --json-logs: every line one object
        assert all({"time", "level", "logger", "message", "worker", "pid"} <= r.keys() for r in records)
        assert any(r["logger"] == "sente.cluster.supervisor" and f"worker {victim} (pid {old}) exited with signal "
                   "SIGKILL" in r["message"] for r in records), records
    finally:
        for held in clients.values():
            for _, conn in held:
                conn.close()


def test_sigterm_drains_websockets_with_1012_answers_polls_and_exits_0() -> None:
    with cluster("sente.testapp:app") as c:
        result = asyncio.run(_drain(c))
        returncode = c.proc.wait(SHUTDOWN_TIMEOUT + 1)
        took = time.monotonic() - result["sent"]
        assert returncode == 0, c.log()
        assert took < SHUTDOWN_TIMEOUT, took
        assert result["codes"] == [1012] * len(result["codes"]) and len(result["codes"]) >= 2
        assert result["poll"][0] == 200 and b"chsk/timeout" in result["poll"][1]
        assert segments(c.proc.pid) == []
        assert "Traceback" not in c.log(), c.log()


async def _session(conn: Conn) -> tuple[str, str]:
    """The rig's session cookie and CSRF token, on this connection's worker."""
    status, headers, token = await conn.get("/csrf-token")
    assert status == 200
    set_cookie = header(headers, "set-cookie")
    assert set_cookie is not None
    return set_cookie.split(";", 1)[0], token.decode()


async def _drain(c: Cluster) -> dict[str, Any]:
    conns: list[Conn] = []
    try:
        for n in range(4):
            conn = await Conn.open(c.port)  # session and upgrade on one connection: one worker
            conns.append(conn)
            cookie, token = await _session(conn)
            query = urlencode({"client-id": f"t{n}", "uid": f"t{n}", "csrf-token": token})
            await conn.upgrade(f"/chsk?{query}", {"Cookie": cookie})
        ajax = await Conn.open(c.port)
        conns.append(ajax)
        cookie, token = await _session(ajax)
        query = urlencode({"client-id": "poller", "csrf-token": token})
        status, _, _ = await ajax.get(f"/chsk?{query}&handshake%3F=true", {"Cookie": cookie})
        assert status == 200
        ajax.send_request(f"/chsk?{query}", {"Cookie": cookie})  # the long-poll, held by the server
        await asyncio.sleep(0.3)

        sent = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        poll = await ajax.response(SHUTDOWN_TIMEOUT)
        codes = []
        for conn in conns[:-1]:
            for _ in range(20):
                opcode, payload = await conn.frame(SHUTDOWN_TIMEOUT)
                if opcode == 0x8:
                    codes.append(int.from_bytes(payload[:2], "big"))
                    conn.writer.write(client_frame(0x8, payload[:2]))
                    break
        return {"sent": sent, "poll": poll[::2], "codes": codes}
    finally:
        for conn in conns:
            conn.close()


def test_readyz_is_503_while_starting_or_draining() -> None:
    async def status(health: Health) -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def inner(*_: Any) -> None:
            raise AssertionError("not for the app")

        await health_routes(inner, health)({"type": "http", "path": "/readyz", "method": "GET"}, None, send)  # type: ignore[arg-type]
        return int(sent[0]["status"])

    assert asyncio.run(status(Health(worker=0))) == 503
    assert asyncio.run(status(Health(worker=0, ready=True))) == 200
    assert asyncio.run(status(Health(worker=0, ready=True, draining=True))) == 503


def test_bad_app_spec_exits_2_before_starting_workers() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sente", "serve", "no_such_module_xyz:app", "--workers", "2",
         "--port", str(free_port())],
        capture_output=True, text=True, timeout=START_TIMEOUT, cwd=REPO,
    )
    assert result.returncode == 2
    assert "No module named 'no_such_module_xyz'" in result.stderr and "Traceback" not in result.stderr
