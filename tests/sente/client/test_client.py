"""The client against our own server over real sockets: ws, ajax and auto; reconnects, timeouts, rejections."""

from __future__ import annotations

import asyncio
import time

import pytest

from csente.types import Keyword as K
from sente.client import (
    ChskClosed,
    ChskTimeout,
    Client,
    ConnectionRejected,
    SyncClient,
    WireRecord,
    connect,
)

from .helpers import Server, run, session

TYPES = ["ws", "ajax", "auto"]


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.stop()


@pytest.mark.parametrize("type", TYPES)
def test_handshake_request_send_pushes_handlers(server, type):
    async def main():
        pushed = []
        async with connect(server.url, type=type, **await session(server)) as c:
            assert c.state.open and c.state.ever_opened and c.state.uid == "alice"
            assert c.state.type == ("ajax" if type == "ajax" else "ws")
            assert await c.request(["test/echo", {"a": [1, "ü"]}], timeout=2) == {"a": [1, "ü"]}
            assert await c.request([K("test/echo"), None], timeout=2) is None
            c.on("test/pushed")(lambda msg: pushed.append(msg.data))
            assert c.send(["test/push-many", [3, "x"]])
            got = [await c.next_event(3) for _ in range(3)]
            assert [m.event for m in got] == [[K("test/pushed"), [i, "x"]] for i in range(3)]
            assert got[0].id is K("test/pushed") and got[0].data == [0, "x"]
            assert pushed == [[i, "x"] for i in range(3)]
        assert not c.state.open and c.state.last_close.reason == "requested-disconnect"
        assert not c.send(["test/echo", 1])
        with pytest.raises(ChskClosed):
            await c.request(["test/echo", 1], timeout=1)

    run(main())


def test_state_events_first_open_and_handshake_data(server):
    async def main():
        changes, handshakes = [], []
        c = Client(server.url, type="ws", params={"hsdata": "hi"}, **await session(server))
        c.on("chsk/state")(lambda m: changes.append(m.data))
        c.on("chsk/handshake")(lambda m: handshakes.append(m.data))
        async with c:
            assert c.state.handshake_data == {"hsdata": "hi"}
            c.reconnect()
            await c.wait_for(lambda s: s.open and len(handshakes) == 2, 5)
        opens = [ch for ch in changes if ch.opened]
        assert [ch.first_open for ch in opens] == [True, False]
        assert handshakes[0] == ["alice", None, {"hsdata": "hi"}, True]
        reasons = [ch.new.last_close.reason for ch in changes if ch.closed]
        assert reasons == ["requested-reconnect", "requested-disconnect"]

    run(main())


@pytest.mark.parametrize("type", ["ws", "ajax"])
def test_reply_timeout(server, type):
    async def main():
        async with connect(server.url, type=type, **await session(server)) as c:
            t0 = time.monotonic()
            with pytest.raises(ChskTimeout):
                await c.request(["test/no-reply", 1], timeout=0.2)
            assert time.monotonic() - t0 < 1.0
            if type == "ajax":  # the server's own reply timeout (lp_timeout_ms = 1 s) comes back as :chsk/timeout
                with pytest.raises(ChskTimeout):
                    await c.request(["test/no-reply", 1], timeout=5)
            assert await c.request(["test/echo", 2], timeout=2) == 2

    run(main())


def test_closed_in_flight_and_reconnect_after_server_close(server):
    async def main():
        async with connect(server.url, type="ws", **await session(server)) as c:
            waiting = asyncio.ensure_future(c.request(["test/reply-later", [3000, "late"]], timeout=5))
            await asyncio.sleep(0.05)
            c.send(["test/close-me"])
            with pytest.raises(ChskClosed):
                await waiting
            assert c.state.last_close.reason == "clean"
            await c.wait_open(5)
            assert await c.request(["test/echo", "again"], timeout=2) == "again"

    run(main())


def test_break_connection_reconnects_both_transports(server):
    async def main():
        for type in ("ws", "ajax"):
            async with connect(server.url, type=type, **await session(server)) as c:
                c.break_connection()
                await c.wait_for(lambda s: s.last_close is not None, 3)
                await c.wait_open(5)
                assert await c.request(["test/echo", type], timeout=2) == type

    run(main())


def test_reconnect_after_server_restart_on_the_same_port():
    first = Server(csrf_token_fn=None).start()
    port = first.port

    async def main():
        async with connect(first.url, type="ws", params={"uid": "zed"}, backoff_ms_fn=lambda n: 100) as c:
            first.stop()
            await c.wait_for(lambda s: not s.open, 5)
            second = Server(port, csrf_token_fn=None).start()
            try:
                await c.wait_open(5)
                assert await c.request(["test/echo", "back"], timeout=2) == "back"
                assert c.state.uid == "zed"
            finally:
                await c.close()
                second.stop()

    run(main(), 25)


def test_server_ping_answered_with_pong():
    server = Server(ws_kalive_ms=300, ws_ping_timeout_ms=300).start()
    try:
        async def main():
            frames: list[WireRecord] = []
            async with connect(server.url, type="ws", ws_kalive_ms=None, trace=frames.append,
                               **await session(server)) as c:
                msg = await c.next_event(3, system=True)
                while msg.id is not K("chsk/ws-ping"):
                    msg = await c.next_event(3, system=True)
                await asyncio.sleep(0.5)  # past the server's ping timeout: still open, so the pong counted
                assert c.state.open and c.state.last_close is None
                raws = [(f.dir, f.raw) for f in frames if f.kind == "ws_frame"]
                assert ("s2c", "[:chsk/ws-ping nil]") in raws and ("c2s", "[[:chsk/ws-pong] nil]") in raws

        run(main())
    finally:
        server.stop()


def test_client_ping_and_ping_timeout(server):
    async def main():
        frames: list[WireRecord] = []
        async with connect(server.url, type="ws", ws_kalive_ms=200, trace=frames.append,
                           **await session(server)) as c:
            await asyncio.sleep(0.35)
            raws = [f.raw for f in frames if f.kind == "ws_frame"]
            pings = [r for r in raws if r.startswith("[[:chsk/ws-ping] ")]
            assert pings and f'["pong" {pings[0].split(" ")[1][:-1]}]' in raws
            assert c.state.open
        async with connect(server.url, type="ws", ws_kalive_ms=200, ws_ping_timeout_ms=0,
                           **await session(server)) as c:
            await c.wait_for(lambda s: s.last_close is not None, 3)
            assert c.state.last_close.reason == "ws-ping-timeout"
            await c.wait_open(3)

    run(main())


def test_auto_downgrades_to_ajax_when_ws_is_unsupported():
    server = Server(ws=False).start()
    try:
        async def main():
            async with connect(server.url, type="auto", **await session(server)) as c:
                assert c.state.type == "ajax" and c.state.open
                assert c.state.last_ws_error is not None
                assert c.state.last_close.reason == "downgrading-ws-to-ajax"
                assert await c.request(["test/echo", 5], timeout=2) == 5

        run(main())
    finally:
        server.stop()


@pytest.mark.parametrize("type", TYPES)
def test_rejections_carry_status_and_body(server, type):
    async def main():
        opts = await session(server)
        with pytest.raises(ConnectionRejected) as e:
            async with connect(server.url, type=type, csrf_token="wrong", headers=opts["headers"]):
                pass
        assert e.value.status == 403 and e.value.body == b"Bad CSRF token"
        assert e.value.transport == ("ws" if type == "ws" else "ajax")

    run(main())


def test_sync_client(server):
    opts = run(session(server))
    with SyncClient(server.url, type="ws", **opts) as c:
        assert c.state.open and c.state.uid == "alice"
        assert c.request(["test/echo", [1, 2]], timeout=2) == [1, 2]
        assert c.send(["test/push-me", "hey"])
        assert c.next_event(3).event == [K("test/pushed"), "hey"]
        with pytest.raises(ChskTimeout):
            c.request(["test/no-reply", 1], timeout=0.1)
        c.break_connection()
        c.wait_for(lambda s: s.last_close is not None, 3)
        c.wait_open(5)
    assert not c.state.open
