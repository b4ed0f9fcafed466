"""Small hostile inputs against ``sente serve --workers 2`` (real processes, raw sockets): each is refused or failed
the way RFC 6455 / HTTP say, counted, logged as at most a WARNING line with a reason, never a traceback, and
the connection's neighbours keep working. Also: ``sente_workers_up`` counts a worker only once it listens.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from sente.edn import Keyword
from tests.sente.cluster.test_supervisor import EDN, Cluster, Conn, cluster, get_once, wait_ready, ws_client
from tests.sente.conformance.replay import client_frame

APP = "tests.sente.cluster.registry_app:app"


@pytest.fixture(scope="module")
def hostile_cluster() -> Iterator[Cluster]:
    with cluster(APP, "--log-level", "info") as c:
        yield c


def assert_clean_log(c: Cluster) -> None:
    log = c.log()
    assert "Traceback" not in log, log
    assert not re.search(r"^\S+ \S+ (ERROR|CRITICAL) ", log, re.M), log


async def metric(port: int, name: str) -> float:
    status, _, body = await get_once(port, "/metrics")
    assert status == 200
    m = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.M)
    assert m is not None, name
    return float(m.group(1))


async def echo(conn: Conn, value: int) -> None:
    assert await conn.call([Keyword("test/echo"), value]) == value


async def close_reply(conn: Conn, payload: bytes) -> int | None:
    """Send a close frame with ``payload``; the code of the server's close frame (None: no code)."""
    conn.writer.write(client_frame(0x8, payload))
    for _ in range(100):
        opcode, body = await conn.frame()
        if opcode == 0x8:
            return struct.unpack("!H", body[:2])[0] if len(body) >= 2 else None
    raise AssertionError("no close frame")


def test_a_client_id_with_a_newline_cannot_forge_a_log_line(hostile_cluster: Cluster) -> None:
    async def run() -> None:
        forged = "x\n2026-01-01 00:00:00,000 ERROR [worker 0 pid 1] sente.server: FORGED\r\x1b[31m"
        conn = await Conn.open(hostile_cluster.port)
        query = urlencode({"client-id": forged, "uid": "forger"})
        await conn.upgrade(f"/chsk?{query}")
        conn.writer.write(client_frame(0x1, b"not edn ["))  # logged: dropped an unreadable frame from client ...
        conn.writer.write(client_frame(0x1, str(EDN.pack_envelope([Keyword("test/echo"), 1], "cb")).encode()))
        assert (await conn.frame())[1] == b'[1 "cb"]'
        conn.close()
        for _ in range(100):
            if "FORGED" in hostile_cluster.log():
                break
            await asyncio.sleep(0.02)

    asyncio.run(run())
    log = hostile_cluster.log()
    assert "FORGED" in log
    assert not any(line.startswith("2026-01-01") or "\x1b" in line for line in log.splitlines()), log
    assert_clean_log(hostile_cluster)


def test_a_non_ascii_session_cookie_is_refused_403_on_the_websocket_path_like_on_http(
        hostile_cluster: Cluster) -> None:
    async def run() -> None:
        for cookie in ("ring-session=\u00e9t\u00e9.\u00e9t\u00e9", "ring-session=abc.\u00ff", "ring-session=\u00e9"):
            conn = await Conn.open(hostile_cluster.port)
            conn.writer.write(
                (f"GET /chsk?client-id=c1&uid=u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"X-CSRF-Token: t\r\nCookie: {cookie}\r\n\r\n").encode())
            status, _, _ = await conn.response()
            assert status == 101  # CSRF is off in this app: the bad cookie is no session, not an error
            conn.close()
            status, _, _ = await get_once(hostile_cluster.port, "/csrf-token")
            assert status == 200

    asyncio.run(run())
    assert_clean_log(hostile_cluster)


def test_integers_too_long_to_write_back_are_refused_when_read_and_the_connection_goes_on(
        hostile_cluster: Cluster) -> None:
    async def run() -> None:
        await asyncio.sleep(1.1)  # the workers publish their counters every second
        before = await metric(hostile_cluster.port, "sente_decode_errors_total")
        conn = await ws_client(hostile_cluster.port, "bigint")
        for number in ("0x" + "f" * 4000, "2r" + "1" * 15000, "0" + "7" * 5000, "36r" + "z" * 3000, "9" * 5000):
            conn.writer.write(client_frame(0x1, f'[[:test/echo {number}] "cb"]'.encode()))
        await echo(conn, 7)  # the bad frames were dropped, one by one
        assert await conn.call([Keyword("test/echo"), int("f" * 3000, 16)]) == int("f" * 3000, 16)  # 3612 digits
        conn.close()
        await asyncio.sleep(1.1)  # the workers publish their counters every second
        assert await metric(hostile_cluster.port, "sente_decode_errors_total") - before == 5

    asyncio.run(run())
    assert_clean_log(hostile_cluster)


@pytest.mark.parametrize(("payload", "reply"), [
    (struct.pack("!H", 1006), 1002),
    (struct.pack("!H", 5000), 1002),
    (struct.pack("!H", 1005), 1002),
    (struct.pack("!H", 999), 1002),
    (struct.pack("!H", 2000), 1002),
    (b"\x03", 1002),
    (struct.pack("!H", 4000) + b"\xff\xfe", 1007),
    (struct.pack("!H", 4000) + b"bye", 4000),
    (struct.pack("!H", 1001), 1001),
    (b"", 1000),
])
def test_a_client_close_frame_is_echoed_only_when_rfc_6455_allows_its_code(
        hostile_cluster: Cluster, payload: bytes, reply: int) -> None:
    async def run() -> None:
        conn = await ws_client(hostile_cluster.port, "closer")
        other = await ws_client(hostile_cluster.port, "bystander")
        assert await close_reply(conn, payload) == reply
        await echo(other, 1)
        conn.close()
        other.close()

    asyncio.run(run())
    assert_clean_log(hostile_cluster)


@pytest.mark.parametrize("first_byte", [0x81 | 0x40, 0x81 | 0x20, 0x81 | 0x10, 0x89 | 0x40],
                         ids=["rsv1", "rsv2", "rsv3", "rsv1-ping"])
def test_a_frame_with_reserved_bits_fails_the_connection_1002(hostile_cluster: Cluster, first_byte: int) -> None:
    async def run() -> None:
        conn = await ws_client(hostile_cluster.port, "rsv")
        other = await ws_client(hostile_cluster.port, "bystander")
        frame = bytearray(client_frame(0x1, b'[[:test/echo 1] "cb"]'))
        frame[0] = first_byte
        conn.writer.write(bytes(frame))
        for _ in range(10):
            opcode, body = await conn.frame()
            if opcode == 0x8:
                assert struct.unpack("!H", body[:2])[0] == 1002
                break
            assert body != b'[1 "cb"]', "the frame was accepted"
        else:
            raise AssertionError("no close frame")
        await echo(other, 2)
        conn.close()
        other.close()

    asyncio.run(run())
    assert_clean_log(hostile_cluster)


def test_workers_up_counts_a_restarted_worker_only_once_it_listens() -> None:
    with cluster("tests.sente.cluster.slow_start_app:app") as c:
        async def run() -> None:
            assert await metric(c.port, "sente_workers_up") == 2
            pids = await wait_ready(c.port, {0, 1})
            os.kill(pids[1], signal.SIGKILL)
            seen: list[float] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the replacement takes 1.5 s to build its app
                try:
                    seen.append(await metric(c.port, "sente_workers_up"))
                except (OSError, asyncio.IncompleteReadError):  # a connection queued at the killed worker
                    continue
                if len(seen) > 5 and seen[-1] == 2:
                    break
                await asyncio.sleep(0.05)
            assert seen[-1] == 2
            ones = [i for i, up in enumerate(seen) if up == 1]
            assert len(ones) >= 10, seen  # 1 for the whole start-up of the replacement (> 1 s at 50 ms steps)
            assert seen[ones[0]:ones[-1] + 1] == [1.0] * len(range(ones[0], ones[-1] + 1)), seen

        asyncio.run(run())
