"""Request-head limits (:mod:`sente.transport.http`) on real sockets: size, header count and time, on plain HTTP
and on WebSocket upgrades, while a healthy client receives a numbered push stream and loses none of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sente import edn, metrics
from sente.edn import Keyword
from sente.server import ChannelSocketServer
from tests.sente.conformance.replay import read_http_response
from tests.sente.test_server import IO_TIMEOUT, Peer, WsClient, make_server, run, serving

K = Keyword


class PushStream:
    """Numbered pushes to one WebSocket client every few ms; :meth:`check` asserts every one arrived, in order."""

    def __init__(self, server: ChannelSocketServer, client: WsClient, uid: str) -> None:
        self.server, self.client, self.uid = server, client, uid
        self.sent = 0
        self.received: list[int] = []
        self._pusher = asyncio.get_running_loop().create_task(self._push())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _push(self) -> None:
        while True:
            assert self.server.send(self.uid, [K("test/n"), self.sent])
            self.sent += 1
            await asyncio.sleep(0.005)

    async def _read(self) -> None:
        while True:
            batch, _ = edn.loads(await self.client.recv(timeout=30))
            self.received.extend(event[1] for event in batch)

    async def check(self) -> None:
        for _ in range(200):  # at least 20 pushes, whatever happened meanwhile
            if self.sent >= 20 or self._pusher.done():
                break
            await asyncio.sleep(0.01)
        if self._pusher.done():
            self._pusher.result()
        self._pusher.cancel()
        deadline = time.monotonic() + IO_TIMEOUT
        while len(self.received) < self.sent and time.monotonic() < deadline and not self._reader.done():
            await asyncio.sleep(0.01)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        assert self.sent >= 20
        assert self.received == list(range(self.sent)), f"lost {self.sent - len(self.received)} of {self.sent}"


@contextlib.asynccontextmanager
async def healthy_stream(**options: Any) -> AsyncIterator[tuple[Peer, PushStream]]:
    server = make_server(**options)
    async with serving(server) as peer:
        stream = PushStream(server, await peer.ws("healthy"), "healthy")
        yield peer, stream
        await stream.check()


async def raw_exchange(peer: Peer, data: bytes, timeout: float = IO_TIMEOUT) -> int:
    """Write ``data`` on a new connection (stopping early if the server closes it); the response's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
    peer.writers.append(writer)
    with contextlib.suppress(ConnectionError):
        for i in range(0, len(data), 64 * 1024):
            writer.write(data[i:i + 64 * 1024])
            await writer.drain()
    _, status, _, _, _ = await asyncio.wait_for(read_http_response(reader), timeout)
    assert await asyncio.wait_for(reader.read(), timeout) == b"", "the connection stays open"
    return status


def head(target: str, lines: list[str], upgrade: bool = False) -> bytes:
    ws = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="] if upgrade else []
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *ws, *lines]) + "\r\n\r\n").encode()


def rejections(reason: str) -> int:
    return int(getattr(metrics.counters(), f"rejected_{reason}"))


@pytest.mark.parametrize("upgrade", [False, True], ids=["http", "ws-upgrade"])
def test_a_head_over_max_head_bytes_gets_431_and_costs_only_that_connection(upgrade: bool) -> None:
    async def test() -> None:
        before = rejections("header_size")
        async with healthy_stream(max_head_bytes=8 * 1024) as (peer, _):
            target = "/chsk?client-id=x&csrf-token=test-csrf-token" if upgrade else "/chsk"
            for size in (8 * 1024, 64 * 1024, 4 * 1024 * 1024):  # the last one is cut off after 8 KiB
                assert await raw_exchange(peer, head(target, ["X-Big: " + "a" * size], upgrade)) == 431
            assert await raw_exchange(peer, head(target, ["Cookie: " + "c=1; " * 2000], upgrade)) == 431
            # just under the limit still works
            ok = await raw_exchange(peer, head("/nowhere", ["X-Big: " + "a" * 7000, "Connection: close"]))
            assert ok == 404
        assert rejections("header_size") - before == 4

    run(test)


@pytest.mark.parametrize("upgrade", [False, True], ids=["http", "ws-upgrade"])
def test_more_headers_than_max_header_count_get_431(upgrade: bool) -> None:
    async def test() -> None:
        before = rejections("header_count")
        async with healthy_stream(max_header_count=20) as (peer, _):
            many = [f"X-H{i}: 1" for i in range(40)]
            assert await raw_exchange(peer, head("/chsk?client-id=x", many, upgrade)) == 431
            assert await raw_exchange(peer, head("/nowhere", [*many[:10], "Connection: close"])) == 404
        assert rejections("header_count") - before == 1

    run(test)


def test_silent_half_sent_and_trickling_connections_are_closed_408_after_head_timeout_ms() -> None:
    async def test() -> None:
        before = rejections("header_timeout")
        async with healthy_stream(head_timeout_ms=400) as (peer, _):
            started = time.monotonic()
            conns = [await asyncio.open_connection("127.0.0.1", peer.port) for _ in range(30)]
            for i, (_, writer) in enumerate(conns):
                peer.writers.append(writer)
                if i % 3 == 1:
                    writer.write(b"GET /chsk?client-id=x HTTP/1.1\r\nUpgrade: websocket\r\n")  # never finished
            trickler = conns[2][1]
            for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 40:  # a byte every 20 ms: still too slow
                trickler.write(bytes([byte]))
                await asyncio.sleep(0.02)
            for reader, _ in conns:
                _, status, _, _, _ = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
                assert status == 408
                assert await asyncio.wait_for(reader.read(), IO_TIMEOUT) == b""
            assert 0.35 < time.monotonic() - started < 3.0
        assert rejections("header_timeout") - before == 30

    run(test)


def test_a_keep_alive_connection_gets_a_new_head_timeout_per_request_and_polls_are_not_cut() -> None:
    async def test() -> None:
        async with healthy_stream(head_timeout_ms=300, lp_timeout_ms=1_000) as (peer, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
            peer.writers.append(writer)
            # a held long-poll outlives the head timeout: only heads are timed
            writer.write(head("/chsk?client-id=p&uid=p&csrf-token=test-csrf-token&handshake?=true", []))
            _, status, _, _, _ = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
            assert status == 200
            writer.write(head("/chsk?client-id=p&uid=p&csrf-token=test-csrf-token", []))
            started = time.monotonic()
            _, status, _, _, body = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
            assert status == 200 and b"chsk/timeout" in body and time.monotonic() - started > 0.9
            writer.write(b"GET /nowhere HTTP/1.1\r\n")  # the next request's head never ends
            _, status, _, _, _ = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
            assert status == 408

    run(test)


def test_bad_requests_are_answered_400_and_counted() -> None:
    async def test() -> None:
        before = rejections("bad_request")
        async with healthy_stream() as (peer, _):
            for garbage in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"):
                assert await raw_exchange(peer, garbage) == 400
        assert rejections("bad_request") - before == 3

    run(test)


def test_a_request_line_with_an_unparsable_target_gets_400_like_any_bad_request() -> None:
    async def test() -> None:
        before = rejections("bad_request")
        async with healthy_stream() as (peer, _):
            for line in (b"GET  HTTP/1.0", b"GET  HTTP/2.0", b"GET http://[::1 HTTP/1.1"):
                assert await raw_exchange(peer, line + b"\r\nHost: x\r\n\r\n") == 400
        assert rejections("bad_request") - before == 3

    run(test)


def test_a_body_not_sent_within_body_timeout_ms_gets_408_and_polls_and_upgrades_are_not_timed() -> None:
    async def test() -> None:
        before = rejections("body_timeout")
        async with healthy_stream(body_timeout_ms=300, lp_timeout_ms=1_000) as (peer, _):
            started = time.monotonic()
            post = (b"POST /chsk?client-id=s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 100\r\n\r\nppstr=")  # 94 bytes never come
            assert await raw_exchange(peer, post) == 408
            assert 0.25 < time.monotonic() - started < 3.0
            # a held long-poll (no body) and an open WebSocket outlive the body timeout
            hs = "/chsk?client-id=p&uid=p&csrf-token=test-csrf-token"
            status, _ = await peer.ajax_get("p", "p", handshake=True)
            assert status == 200
            status, _, body = await peer.http("GET", hs)
            assert status == 200 and b"chsk/timeout" in body
            ws = await peer.ws("w")
            await asyncio.sleep(0.5)
            assert peer.server.send("w", ["test/still", "open"], flush=True)
            assert "test/still" in await ws.recv()
        assert rejections("body_timeout") - before == 1

    run(test)
