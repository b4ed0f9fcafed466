"""The server's Python API and its limits, over real sockets on 127.0.0.1.

Each test starts a :class:`ChannelSocketServer` on uvicorn in the test's own event loop (``asyncio.run``,
bounded by ``TEST_TIMEOUT``) on a free port: through the picows bridge (``sente.serve.uvicorn_config``) or,
for the plain ASGI path, mounted inside another ASGI app on uvicorn's own WebSocket implementation. Clients
are raw sockets (the conformance replay's frame and HTTP helpers): WebSockets and Ajax long-polls/POSTs,
speaking edn. Every client socket is closed and the server stopped when the test ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import uvicorn

from sente import edn
from sente.app import SenteApp
from sente.edn import Keyword
from sente.protocol.requests import Request
from sente.protocol.server import EventMsg
from sente.serve import uvicorn_config
from sente.server import AsgiApp, ChannelSocketServer, ConnectedUids
from tests.helpers import wait_until
from tests.sente.conformance.replay import client_frame, read_frame, read_http_response

K = Keyword
TEST_TIMEOUT = 20.0
IO_TIMEOUT = 5.0
TOKEN = "test-csrf-token"


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run one async test in a fresh event loop, bounded in time."""

    async def bounded() -> None:
        await asyncio.wait_for(test(), TEST_TIMEOUT)

    asyncio.run(bounded())


def make_server(**options: Any) -> ChannelSocketServer:
    """A server whose uid is the ``uid`` param and whose CSRF token is ``TOKEN`` (unless overridden)."""
    options.setdefault("user_id_fn", lambda request: request.param("uid"))
    options.setdefault("csrf_token_fn", lambda request: TOKEN)
    return ChannelSocketServer(**options)


# ---------------------------------------------------------------------------------------- clients


class Closed(Exception):
    """The server closed the WebSocket; ``code`` is its close code."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class WsClient:
    """A raw-socket WebSocket client speaking Sente's edn envelope."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def send(self, text: str) -> None:
        self.writer.write(client_frame(0x1, text.encode("utf-8")))

    def send_frame(self, opcode: int, payload: bytes) -> None:
        self.writer.write(client_frame(opcode, payload))

    async def recv(self, timeout: float = IO_TIMEOUT) -> str:
        """The next text message (protocol pings/pongs skipped); raises :class:`Closed` on a close frame."""
        for _ in range(1000):
            _, opcode, payload = await asyncio.wait_for(read_frame(self.reader), timeout)
            if opcode == 0x8:
                raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)
            if opcode == 0x1:
                return payload.decode("utf-8")
            assert opcode in (0x9, 0xA), f"unexpected opcode {opcode}"
        raise AssertionError("too many control frames")

    async def recv_events(self, n: int, timeout: float = IO_TIMEOUT) -> list[Any]:
        """Read push batches until ``n`` events have arrived; the events, in arrival order."""
        events: list[Any] = []
        for _ in range(n):
            payload, cb = edn.loads(await self.recv(timeout))
            assert cb is None, f"a push batch has no cb-id, got {cb!r}"
            events.extend(payload)
            if len(events) >= n:
                break
        assert len(events) == n, events
        return events

    async def close_code(self, timeout: float = IO_TIMEOUT) -> int | None:
        """Skip messages until the server's close frame; its code."""
        for _ in range(100_000):
            try:
                await self.recv(timeout)
            except Closed as closed:
                return closed.code
        raise AssertionError("no close frame")

    async def nothing_arrives(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            data = await asyncio.wait_for(read_frame(self.reader), seconds)
            raise AssertionError(f"unexpected frame {data!r}")


class Peer:
    """One running server: its port, and the client sockets opened against it (closed at the end)."""

    def __init__(self, server: ChannelSocketServer, port: int) -> None:
        self.server = server
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []

    async def _open(self, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        self.writers.append(writer)
        return reader, writer

    async def ws(
        self,
        uid: str | None = None,
        client_id: str | None = None,
        token: str | None = TOKEN,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        handshake: bool = True,
    ) -> WsClient:
        """Upgrade to a WebSocket on the server's path; by default also read and check the handshake."""
        query = {"client-id": client_id or f"c-{os.urandom(4).hex()}"}
        if uid is not None:
            query["uid"] = uid
        if token is not None:
            query["csrf-token"] = token
        query.update(params or {})
        reader, writer = await self._open(rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            (
                f"GET {self.server.path}?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n{extra}\r\n"
            ).encode("latin-1")
        )
        client = WsClient(reader, writer)
        _, client.status, _, client.headers, client.body = await asyncio.wait_for(
            read_http_response(reader), IO_TIMEOUT
        )
        if client.status == 101 and handshake:
            payload, cb = edn.loads(await client.recv())
            assert payload[0] == K("chsk/handshake") and cb is None, payload
            assert payload[1][0] == (uid if uid is not None else K("sente/nil-uid"))
        return client

    async def http(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One HTTP request on its own connection; (status, headers, body)."""
        reader, writer = await self._open()
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            _, status, _, response_headers, response_body = await asyncio.wait_for(
                read_http_response(reader), IO_TIMEOUT
            )
        finally:
            writer.close()
        return status, response_headers, response_body

    def _query(self, uid: str | None, client_id: str, token: str | None, **more: str) -> str:
        query = {"client-id": client_id, **more}
        if uid is not None:
            query["uid"] = uid
        if token is not None:
            query["csrf-token"] = token
        return f"{self.server.path}?{urlencode(query)}"

    async def ajax_get(
        self, uid: str | None, client_id: str, token: str | None = TOKEN, *, handshake: bool = False
    ) -> tuple[int, bytes]:
        extra = {"handshake?": "true"} if handshake else {}
        status, _, body = await self.http("GET", self._query(uid, client_id, token, **extra))
        return status, body

    async def ajax_post(
        self, uid: str | None, client_id: str, ppstr: str | bytes, token: str | None = TOKEN
    ) -> tuple[int, bytes]:
        body = ppstr if isinstance(ppstr, bytes) else f"ppstr={quote(ppstr, safe='')}".encode()
        status, _, response = await self.http(
            "POST",
            self._query(uid, client_id, None),
            body,
            {"Content-Type": "application/x-www-form-urlencoded", **({"X-CSRF-Token": token} if token else {})},
        )
        return status, response

    def close_all(self) -> None:
        for writer in self.writers:
            writer.close()


@contextlib.asynccontextmanager
async def serving(
    server: ChannelSocketServer, *, app: AsgiApp | None = None, ws: str = "bridge"
) -> AsyncIterator[Peer]:
    """Serve ``server`` on a free port: through the picows bridge, or ``app`` on uvicorn's ``ws`` implementation."""
    if ws == "bridge":
        config = uvicorn_config(SenteApp(server, app or server.asgi()), port=0, log_level="warning")
    else:
        config = uvicorn.Config(
            app or server.asgi(), host="127.0.0.1", port=0, ws=ws, http="httptools", lifespan="on",
            log_config=None, log_level="warning",
        )
    uv = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(uv.serve())
    await wait_until(lambda: uv.started or task.done())
    assert uv.started, "uvicorn did not start"
    peer = Peer(server, uv.servers[0].sockets[0].getsockname()[1])
    try:
        yield peer
    finally:
        peer.close_all()
        uv.should_exit = True
        await asyncio.wait_for(task, IO_TIMEOUT)


async def ajax_connect(peer: Peer, uid: str, client_id: str) -> asyncio.Task[tuple[int, bytes]]:
    """Ajax handshake, then a long-poll held by the server (as a task); returns once the uid counts as connected."""
    status, body = await peer.ajax_get(uid, client_id, handshake=True)
    assert status == 200 and body.decode() == f'[[:chsk/handshake ["{uid}" nil nil]] nil]', body
    poll = asyncio.get_running_loop().create_task(peer.ajax_get(uid, client_id))
    await wait_until(lambda: uid in peer.server.connected_uids.ajax)
    return poll


# ======================================================================================== 1. pushes, bridge


def test_ws_client_gets_the_handshake_through_the_bridge() -> None:
    async def test() -> None:
        async with serving(make_server()) as peer:
            client = await peer.ws("alice", handshake=False)
            assert client.status == 101
            assert await client.recv() == '[[:chsk/handshake ["alice" nil nil]] nil]'

    run(test)


def test_send_to_a_connected_uid_returns_true_and_the_client_receives_the_batch() -> None:
    async def test() -> None:
        server = make_server()
        async with serving(server) as peer:
            client = await peer.ws("alice")
            assert server.send("alice", ["test/pushed", {"a": 1}]) is True
            assert server.send("alice", [K("test/pushed"), {"a": 2}]) is True
            assert await client.recv() == "[[[:test/pushed {:a 1}] [:test/pushed {:a 2}]] nil]"

    run(test)


def test_send_to_an_unknown_uid_returns_false() -> None:
    async def test() -> None:
        server = make_server()
        async with serving(server) as peer:
            client = await peer.ws("alice")
            assert server.send("nobody", ["test/pushed", 1]) is False
            await client.nothing_arrives(0.1)

    run(test)


def test_broadcast_reaches_ws_and_ajax_clients_of_different_uids_with_identical_bytes() -> None:
    async def test() -> None:
        server = make_server()
        async with serving(server) as peer:
            ws = await peer.ws("alice")
            poll = await ajax_connect(peer, "bob", "bob-tab")
            server.broadcast(["test/news", {"n": 1}])
            frame = await ws.recv()
            status, body = await asyncio.wait_for(poll, IO_TIMEOUT)
            assert status == 200
            assert frame == "[[[:test/news {:n 1}]] nil]"
            assert body == frame.encode("utf-8")

    run(test)


def test_pushes_to_one_client_arrive_in_send_order_across_several_windows() -> None:
    async def test() -> None:
        server = make_server(send_buf_ms_ws=10)
        async with serving(server) as peer:
            client = await peer.ws("alice")
            n = 0
            for _window in range(4):
                for _ in range(5):
                    server.send("alice", ["test/seq", n])
                    n += 1
                await asyncio.sleep(0.02)  # past the 10 ms window: the next sends start a new batch
            events = await client.recv_events(n)
            assert [e[1] for e in events] == list(range(n))
            assert {e[0] for e in events} == {K("test/seq")}

    run(test)


def test_flush_true_arrives_without_waiting_for_the_window() -> None:
    async def test() -> None:
        server = make_server(send_buf_ms_ws=3_000)
        async with serving(server) as peer:
            client = await peer.ws("alice")
            started = time.monotonic()
            server.send("alice", ["test/a", 1])
            server.send("alice", ["test/b", 2], flush=True)
            assert await client.recv(timeout=1.0) == "[[[:test/a 1] [:test/b 2]] nil]"
            assert time.monotonic() - started < 1.0

    run(test)


def test_adaptive_mode_sends_a_push_on_the_next_loop_pass() -> None:
    async def test() -> None:
        server = make_server(send_buf_ms_ws=0)
        async with serving(server) as peer:
            client = await peer.ws("alice")
            written: list[Any] = []
            write = server._write
            server._write = lambda action: (written.append(action), write(action))  # type: ignore[method-assign]
            server.send("alice", ["test/a", 1])
            server.send("alice", ["test/b", 2])
            assert written == [], "buffered until the loop is free"
            for _ in range(3):
                await asyncio.sleep(0)
                if written:
                    break
            assert len(written) == 1, "one batch, written within a loop pass or two, without a timer window"
            assert await client.recv() == "[[[:test/a 1] [:test/b 2]] nil]"

    run(test)


# ======================================================================================== 2. connected uids


def test_connected_uids_follow_clients_in_and_out_after_the_grace_period() -> None:
    async def test() -> None:
        server = make_server(ms_allow_reconnect_before_close_ws=200, ms_allow_reconnect_before_close_ajax=100)
        seen: list[ConnectedUids] = []
        server.on_connected_uids_change(seen.append)
        empty: frozenset[str] = frozenset()
        async with serving(server) as peer:
            assert server.connected_uids == ConnectedUids(empty, empty, empty)
            ws = await peer.ws("alice")
            assert server.connected_uids == ConnectedUids(frozenset({"alice"}), empty, frozenset({"alice"}))
            poll = await ajax_connect(peer, "bob", "bob-tab")
            both = ConnectedUids(frozenset({"alice"}), frozenset({"bob"}), frozenset({"alice", "bob"}))
            assert server.connected_uids == both

            ws.writer.close()  # alice leaves; she stays connected for the grace period
            closed_at = time.monotonic()
            await asyncio.sleep(0.03)
            assert server.connected_uids == both
            await wait_until(lambda: "alice" not in server.connected_uids.any)
            assert time.monotonic() - closed_at >= 0.19
            assert server.connected_uids == ConnectedUids(empty, frozenset({"bob"}), frozenset({"bob"}))

            poll.cancel()  # bob stops polling: his held request's socket closes
            for writer in peer.writers:
                writer.close()
            await wait_until(lambda: not server.connected_uids.any)
            assert server.connected_uids == ConnectedUids(empty, empty, empty)
        assert seen == [
            ConnectedUids(frozenset({"alice"}), empty, frozenset({"alice"})),
            both,
            ConnectedUids(empty, frozenset({"bob"}), frozenset({"bob"})),
            ConnectedUids(empty, empty, empty),
        ]

    run(test)


def test_uidport_open_and_close_reach_handlers_once_per_uid_even_with_two_tabs() -> None:
    async def test() -> None:
        server = make_server(ms_allow_reconnect_before_close_ws=50)
        opened: list[Any] = []
        closed: list[Any] = []
        server.on("chsk/uidport-open")(lambda msg: opened.append(msg.data))
        server.on("chsk/uidport-close")(lambda msg: closed.append(msg.data))
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                tab1 = await peer.ws("alice", "tab-1")
                tab2 = await peer.ws("alice", "tab-2")
                bob = await peer.ws("bob", "bob-tab")
                await wait_until(lambda: len(opened) == 2)
                assert sorted(opened) == ["alice", "bob"]
                tab1.writer.close()
                await asyncio.sleep(0.15)  # past tab 1's grace period: alice still has tab 2
                assert closed == []
                assert "alice" in server.connected_uids.ws
                tab2.writer.close()
                bob.writer.close()
                await wait_until(lambda: len(closed) == 2)
                await asyncio.sleep(0.1)
                assert sorted(closed) == ["alice", "bob"]
                assert sorted(opened) == ["alice", "bob"]
            finally:
                stop()

    run(test)


# ======================================================================================== 3. events and the router


def test_events_yields_event_messages_with_their_request_and_a_reply() -> None:
    async def test() -> None:
        server = ChannelSocketServer()  # Sente's defaults: uid and CSRF token from the session
        session = server.sessions.new()
        session["uid"] = "alice"
        token = server.sessions.csrf_token(session)
        set_cookie = server.sessions.save(session)
        assert set_cookie is not None
        cookie = set_cookie.split(";", 1)[0]
        events = server.events()
        async with serving(server) as peer:
            try:
                client = await peer.ws(
                    None, "tab-1", token, params={"extra": "q"}, headers={"Cookie": cookie, "X-Test": "yes"},
                    handshake=False,
                )
                assert await client.recv() == '[[:chsk/handshake ["alice" nil nil]] nil]'
                client.send('[[:my/ev {:x 1, :y [1 2]}] "cb1234"]')
                msg: EventMsg | None = None
                for _ in range(10):
                    msg = await asyncio.wait_for(anext(events), IO_TIMEOUT)
                    if msg.id == K("my/ev"):
                        break
                    assert msg.id == K("chsk/uidport-open")
                assert msg is not None
                assert msg.event == [K("my/ev"), {"x": 1, "y": [1, 2]}]
                assert msg.id == K("my/ev")
                assert msg.data == {"x": 1, "y": [1, 2]}
                assert msg.uid == "alice"
                assert msg.client_id == "tab-1"
                assert msg.transport == "ws"
                assert msg.request is not None
                assert msg.request.header("x-test") == "yes"
                assert msg.request.param("extra") == "q"
                assert msg.request.cookies[server.sessions.cookie_name] == cookie.partition("=")[2]
                assert msg.request.session["uid"] == "alice"
                assert msg.reply is not None
                assert msg.reply({"ok": True}) is True
                assert await client.recv() == '[{:ok true} "cb1234"]'
            finally:
                await events.aclose()

    run(test)


def test_the_router_routes_by_id_to_sync_and_async_handlers_survives_errors_and_stops() -> None:
    async def test() -> None:
        server = make_server()
        handled: list[tuple[str, Any]] = []

        @server.on("test/sync")
        def sync_handler(msg: EventMsg) -> None:
            handled.append(("sync", msg.data))

        @server.on(K("test/async"))
        async def async_handler(msg: EventMsg) -> None:
            await asyncio.sleep(0.01)
            handled.append(("async", msg.data))

        @server.on("test/boom")
        def boom(msg: EventMsg) -> None:
            raise RuntimeError("handler failure")

        @server.on_default
        def default(msg: EventMsg) -> None:
            if msg.id.ns != "chsk":
                handled.append(("default", msg.id))

        async with serving(server) as peer:
            stop = server.start_router()
            client = await peer.ws("alice")
            for text in ("[[:test/boom 0] nil]", "[[:test/sync 1] nil]", "[[:test/async 2] nil]",
                         "[[:other/thing 3] nil]", "[[:test/sync 4] nil]"):
                client.send(text)
            await wait_until(lambda: len(handled) == 4)
            assert handled == [("sync", 1), ("async", 2), ("default", K("other/thing")), ("sync", 4)]

            stop()
            await asyncio.sleep(0)
            client.send("[[:test/sync 5] nil]")
            events = server.events()
            try:
                msg = await asyncio.wait_for(anext(events), IO_TIMEOUT)  # waits in the buffer: nobody routed it
            finally:
                await events.aclose()
            assert msg.event == [K("test/sync"), 5]
            assert handled == [("sync", 1), ("async", 2), ("default", K("other/thing")), ("sync", 4)]

    run(test)


def test_a_reply_from_a_handler_reaches_a_ws_client_with_its_cb_id_and_an_ajax_post_as_the_response() -> None:
    async def test() -> None:
        server = make_server()

        @server.on("test/echo")
        async def echo(msg: EventMsg) -> None:
            assert msg.reply is not None
            msg.reply({"echo": msg.data})

        async with serving(server) as peer:
            stop = server.start_router()
            try:
                client = await peer.ws("alice")
                client.send('[[:test/echo 1] "a1b2c3"]')
                assert await client.recv() == '[{:echo 1} "a1b2c3"]'
                status, body = await peer.ajax_post("bob", "bob-tab", "[[:test/echo 2] :ajax]")
                assert (status, body) == (200, b"[{:echo 2} nil]")
                status, body = await peer.ajax_post("bob", "bob-tab", "[[:test/echo 3] nil]")
                assert (status, body) == (200, b"[:chsk/dummy-cb-200 nil]")
            finally:
                stop()

    run(test)


def test_the_receive_buffer_slides_when_nobody_reads_dropping_the_oldest() -> None:
    async def test() -> None:
        server = make_server(recv_buffer=3)
        async with serving(server) as peer:
            client = await peer.ws("alice")  # queues :chsk/uidport-open
            for i in range(6):
                client.send(f"[[:test/n {i}] nil]")
            await wait_until(lambda: server.dropped_events == 4)
            events = server.events()
            try:
                got = [await asyncio.wait_for(anext(events), IO_TIMEOUT) for _ in range(3)]
            finally:
                await events.aclose()
            assert [m.event for m in got] == [[K("test/n"), 3], [K("test/n"), 4], [K("test/n"), 5]]
            assert server.dropped_events == 4

    run(test)


# ======================================================================================== 4. str keys


def test_str_keys_python_sees_str_keys_and_the_wire_has_keywords() -> None:
    async def test() -> None:
        server = make_server()  # str_keys=True is the default
        events = server.events()
        async with serving(server) as peer:
            try:
                client = await peer.ws("alice")
                client.send('[[:chat/msg {:msg "hi", :meta {:to "bob"}}] nil]')
                msg = await asyncio.wait_for(anext(events), IO_TIMEOUT)
                while msg.id != K("chat/msg"):
                    msg = await asyncio.wait_for(anext(events), IO_TIMEOUT)
                assert msg.data == {"msg": "hi", "meta": {"to": "bob"}}
                server.send("alice", ["chat/msg", {"msg": "hi"}])
                assert await client.recv() == '[[[:chat/msg {:msg "hi"}]] nil]'
            finally:
                await events.aclose()

    run(test)


def test_str_keys_false_keeps_keyword_keys() -> None:
    async def test() -> None:
        server = make_server(str_keys=False)
        events = server.events()
        async with serving(server) as peer:
            try:
                client = await peer.ws("alice")
                client.send('[[:chat/msg {:msg "hi", "s" 1}] nil]')
                msg = await asyncio.wait_for(anext(events), IO_TIMEOUT)
                while msg.id != K("chat/msg"):
                    msg = await asyncio.wait_for(anext(events), IO_TIMEOUT)
                assert msg.data == {K("msg"): "hi", "s": 1}
                server.send("alice", ["chat/msg", {K("msg"): "hi", "s": 1}])
                assert await client.recv() == '[[[:chat/msg {:msg "hi", "s" 1}]] nil]'
            finally:
                await events.aclose()

    run(test)


# ======================================================================================== 5. limits, bad input


def echo_server(**options: Any) -> ChannelSocketServer:
    """A server whose ``test/echo`` handler replies with the event's data."""
    server = make_server(**options)

    @server.on("test/echo")
    def echo(msg: EventMsg) -> None:
        if msg.reply is not None:
            msg.reply(msg.data)

    return server


async def assert_echoes(client: WsClient, value: str = ":ok") -> None:
    client.send(f'[[:test/echo {value}] "e1e2e3"]')
    assert await client.recv() == f'[{value} "e1e2e3"]'


def test_a_ws_message_over_max_ws_message_bytes_closes_that_connection_1009_others_keep_working() -> None:
    async def test() -> None:
        server = echo_server(max_ws_message_bytes=1_000)
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                big = await peer.ws("alice")
                other = await peer.ws("bob")
                await assert_echoes(big)
                big.send('[[:test/echo "' + "x" * 1_000 + '"] "e1e2e3"]')
                assert await big.close_code() == 1009
                await assert_echoes(other)
                server.send("bob", ["test/still", "here"])
                assert await other.recv() == '[[[:test/still "here"]] nil]'
            finally:
                stop()

    run(test)


def test_an_ajax_post_over_max_body_bytes_gets_413_and_the_server_keeps_serving() -> None:
    async def test() -> None:
        server = echo_server(max_body_bytes=1_000)
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                status, _ = await peer.ajax_post("bob", "bob-tab", '[[:test/echo "' + "x" * 1_000 + '"] :ajax]')
                assert status == 413
                assert await peer.ajax_post("bob", "bob-tab", "[[:test/echo 1] :ajax]") == (200, b"[1 nil]")
                await assert_echoes(await peer.ws("alice"))
            finally:
                stop()

    run(test)


@pytest.mark.parametrize("ws", ["bridge", "websockets-sansio"])
def test_a_slow_consumer_is_closed_and_counted_while_a_normal_client_keeps_receiving(ws: str) -> None:
    async def test() -> None:
        server = make_server(max_outbound_bytes=256 * 1024, slow_consumer_close_code=4008)
        chunk = "x" * 64 * 1024
        async with serving(server, app=mounted(server) if ws != "bridge" else None, ws=ws) as peer:
            slow = await peer.ws("slow", rcvbuf=4096)  # reads its handshake, then nothing more
            normal = await peer.ws("normal")
            received = 0
            for i in range(2_000):  # at most 128 MiB; the kernel buffers a few MiB before the cap is hit
                server.send("slow", ["test/big", chunk], flush=True)
                if i % 20 == 0:
                    server.send("normal", ["test/tick", i], flush=True)
                    (event,) = await normal.recv_events(1)
                    assert event == [K("test/tick"), i]
                    received += 1
                await asyncio.sleep(0)
                if server.slow_consumer_closes:
                    break
            assert server.slow_consumer_closes == 1
            server.send("normal", ["test/tick", "after"], flush=True)
            assert await normal.recv_events(1) == [[K("test/tick"), "after"]]
            assert await slow.close_code() == 4008  # behind what was queued before the close
            assert received >= 1

    run(test)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param((0x1, b"this is not edn ["), id="unreadable-edn"),
        pytest.param((0x1, b"{:not [closed"), id="truncated-edn"),
        pytest.param((0x2, b"\x00\xff\x10binary"), id="binary-to-edn"),
        pytest.param((0x1, b"[[:no-namespace 1] nil]"), id="invalid-event"),
    ],
)
def test_garbage_messages_are_dropped_and_leave_the_connection_and_others_working(garbage: tuple[int, bytes]) -> None:
    async def test() -> None:
        server = echo_server()
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                sender = await peer.ws("alice")
                other = await peer.ws("bob")
                sender.send_frame(*garbage)
                await assert_echoes(sender)
                await assert_echoes(other)
            finally:
                stop()

    run(test)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\x83\x80" + b"\x00" * 4, id="reserved-opcode"),
        pytest.param(b"\x81\x05hello", id="unmasked"),
        pytest.param(b"\x80\x80" + b"\x00" * 4, id="orphan-continuation"),
    ],
)
def test_malformed_frames_close_only_that_connection(frame: bytes) -> None:
    async def test() -> None:
        server = echo_server()
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                bad = await peer.ws("alice")
                other = await peer.ws("bob")
                bad.writer.write(frame)
                assert await bad.close_code() == 1002
                await assert_echoes(other)
            finally:
                stop()

    run(test)


def test_malformed_ajax_posts_fail_alone_and_the_server_keeps_serving() -> None:
    async def test() -> None:
        server = echo_server()
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                ws = await peer.ws("alice")
                status, body = await peer.ajax_post("bob", "bob-tab", "{:not [closed")
                assert status == 500 and body
                status, _ = await peer.ajax_post("bob", "bob-tab", b"\xff\xfe not a form")
                assert status == 200  # no ppstr: nothing to read, acknowledged as Sente does
                status, _, _ = await peer.http("POST", f"{server.path}?client-id=x", b"", {"X-CSRF-Token": TOKEN})
                assert status == 200
                status, _, _ = await peer.http("PUT", f"{server.path}?client-id=x")
                assert status == 405
                assert await peer.ajax_post("bob", "bob-tab", "[[:test/echo 1] :ajax]") == (200, b"[1 nil]")
                await assert_echoes(ws)
            finally:
                stop()

    run(test)


def test_a_wrong_csrf_token_gets_403_on_ws_upgrade_and_ajax() -> None:
    async def test() -> None:
        server = echo_server()
        async with serving(server) as peer:
            for token in ("wrong", None):
                client = await peer.ws("alice", token=token)
                assert (client.status, client.body) == (403, b"Bad CSRF token")
                assert (await peer.ajax_get("alice", "tab", token, handshake=True))[0] == 403
                assert (await peer.ajax_post("alice", "tab", "[[:test/echo 1] :ajax]", token))[0] == 403
            assert server.connected_uids.any == frozenset()
            await peer.ws("alice")  # the right token still works

    run(test)


# ======================================================================================== 6. plain ASGI path

ASGI_WS = "websockets-sansio"  # uvicorn's own WebSocket implementation (websockets' sans-I/O core)


def mounted(server: ChannelSocketServer) -> AsgiApp:
    """Another ASGI app (its own ``/hello`` and lifespan) with Sente's app mounted inside it."""
    sente_app = server.asgi()
    state: dict[str, Callable[[], None]] = {}

    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["stop"] = server.start_router()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    state["stop"]()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["path"] == "/hello":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"hello"})
        else:
            await sente_app(scope, receive, send)

    return outer


def test_uvicorn_has_the_websocket_implementation_the_asgi_tests_use() -> None:
    from uvicorn.config import WS_PROTOCOLS

    assert ASGI_WS in WS_PROTOCOLS
    import websockets  # noqa: F401  (what that implementation runs on)


def test_mounted_asgi_app_on_uvicorns_websockets_handshake_echo_and_push_work_the_same() -> None:
    async def test() -> None:
        server = echo_server()
        async with serving(server, app=mounted(server), ws=ASGI_WS) as peer:
            assert (await peer.http("GET", "/hello"))[::2] == (200, b"hello")
            client = await peer.ws("alice", handshake=False)
            assert client.status == 101
            assert await client.recv() == '[[:chsk/handshake ["alice" nil nil]] nil]'
            assert server.connected_uids.ws == frozenset({"alice"})
            await assert_echoes(client, '{:a [1 2]}')
            assert server.send("alice", ["test/pushed", {"a": 1}]) is True
            server.send("alice", ["test/pushed", {"a": 2}])
            assert await client.recv() == "[[[:test/pushed {:a 1}] [:test/pushed {:a 2}]] nil]"
            server.send("alice", ["test/now", 1], flush=True)
            assert await client.recv(timeout=1.0) == "[[[:test/now 1]] nil]"
            assert await peer.ajax_post("bob", "bob-tab", "[[:test/echo 1] :ajax]") == (200, b"[1 nil]")

    run(test)


def test_mounted_asgi_app_refuses_an_upgrade_with_a_wrong_csrf_token() -> None:
    async def test() -> None:
        server = echo_server()
        async with serving(server, app=mounted(server), ws=ASGI_WS) as peer:
            client = await peer.ws("alice", token="wrong")
            assert (client.status, client.body) == (403, b"Bad CSRF token")
            client = await peer.ws("alice", params={"client-id": ""})
            assert client.status == 500
            assert server.connected_uids.any == frozenset()
            await assert_echoes(await peer.ws("alice"))

    run(test)


def test_mounted_asgi_app_limits_message_size_and_survives_garbage() -> None:
    async def test() -> None:
        server = echo_server(max_ws_message_bytes=1_000)
        async with serving(server, app=mounted(server), ws=ASGI_WS) as peer:
            big = await peer.ws("alice")
            other = await peer.ws("bob")
            seen: list[Any] = []
            server.on("test/seen")(lambda msg: seen.append(msg.data))
            other.send("this is not edn [")
            big.send('[[:test/echo "' + "x" * 1_000 + '"] "e1e2e3"]')
            big.send("[[:test/seen 1] nil]")  # after the 1009: ignored, as on the bridge
            assert await big.close_code() == 1009
            await assert_echoes(other)
            other.send("[[:test/seen 2] nil]")
            await wait_until(lambda: seen == [2])

    run(test)


@pytest.mark.parametrize("ws", ["bridge", ASGI_WS])
def test_max_ws_message_bytes_counts_utf8_bytes_not_characters(ws: str) -> None:
    async def test() -> None:
        server = echo_server(max_ws_message_bytes=1_000)
        async with serving(server, app=mounted(server) if ws != "bridge" else None, ws=ws) as peer:
            if ws == "bridge":
                stop = server.start_router()
            try:
                fits = await peer.ws("alice")
                await assert_echoes(fits, '"' + "x" * (1_000 - len('[[:test/echo ""] "e1e2e3"]')) + '"')
                big = await peer.ws("bob")
                big.send('[[:test/echo "' + "é" * 400 + '"] "e1e2e3"]')  # 425 characters, 825 bytes: fits
                assert (await big.recv()).startswith('["éé')
                big.send('[[:test/echo "' + "é" * 600 + '"] "e1e2e3"]')  # 625 characters, 1225 bytes
                assert await big.close_code() == 1009
                await assert_echoes(fits)
            finally:
                if ws == "bridge":
                    stop()

    run(test)


def test_one_router_at_a_time_reads_the_stream():
    async def main() -> None:
        server = ChannelSocketServer()
        stop = server.start_router(lambda msg: None)
        assert server.start_router() == stop
        with pytest.raises(RuntimeError):
            server.start_router(lambda msg: None)
        stop()
        server.start_router(lambda msg: None)()

    asyncio.run(main())


def test_the_asgi_lifespan_starts_and_stops_the_router_of_registered_handlers():
    async def main() -> None:
        server = ChannelSocketServer()
        server.on("test/x")(lambda msg: None)
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, str]:
            await asyncio.sleep(0)
            assert server._router is not None  # running while the app lives
            return messages.pop(0)

        async def send(message: dict[str, str]) -> None:
            sent.append(message["type"])

        await server.asgi()({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert server._router is None

    asyncio.run(main())


def test_the_csrf_token_route_hands_out_the_session_token_a_request_must_present():
    async def main() -> None:
        server = ChannelSocketServer()
        app = server.asgi(csrf_token_path="/csrf-token")
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": "/csrf-token", "headers": []}, receive, send)
        headers = dict(sent[0]["headers"])
        token = sent[1]["body"].decode()
        cookie = headers[b"Set-Cookie"].decode().split(";")[0]
        assert sent[0]["status"] == 200 and token and headers[b"Cache-Control"] == b"no-store"
        request = Request(
            "GET", "/chsk", query=[("client-id", "c1"), ("csrf-token", token)], cookies=dict([cookie.split("=", 1)])
        )
        assert server.core.ws_accept(server._with_session(request)) is None
        request.query = [("client-id", "c1"), ("csrf-token", "forged")]
        assert server.core.ws_accept(server._with_session(request)) is not None

    asyncio.run(main())
