"""The WebSocket bridge on real sockets: uvicorn serves HTTP and picows serves upgrades on one port.

Every test starts a uvicorn server in its own event loop (asyncio.Runner, bounded by a timeout) on a
free 127.0.0.1 port, with a tiny ASGI app (GET /hello) and an echoing WsHandler; clients are picows's
``ws_connect`` and a raw-socket client that writes frames byte by byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import picows
import pytest
import uvicorn

from sente.transport import websocket as ws_mod
from sente.transport.websocket import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HttpResponse,
    UpgradeRequest,
    WsConnection,
    build_text_frame,
    make_ws_protocol_class,
)
from tests.helpers import wait_until

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

try:
    import httptools  # noqa: F401

    HTTP_IMPLS = ["h11", "httptools"]
except ImportError:  # pragma: no cover
    HTTP_IMPLS = ["h11"]

LOOPS = ["asyncio", "uvloop"] if uvloop is not None else ["asyncio"]
DEFAULT_HTTP = HTTP_IMPLS[-1]
TEST_TIMEOUT = 30.0
IO_TIMEOUT = 5.0

PINNED_PICOWS = "2.3.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# --------------------------------------------------------------------------------------------
# Harness


def run(coro_fn: Callable[[], Awaitable[None]], loop: str = "asyncio") -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else None

    async def bounded() -> None:
        try:
            await asyncio.wait_for(coro_fn(), TEST_TIMEOUT)
        finally:
            while OPEN_WRITERS:
                OPEN_WRITERS.pop().close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(bounded())


OPEN_WRITERS: list[asyncio.StreamWriter] = []  # raw test sockets, closed when the test's loop ends


class EchoHandler:
    """Echoes text and binary; ``refuse`` decides the upgrade; special texts drive server actions."""

    def __init__(self, refuse: Callable[[UpgradeRequest], HttpResponse | None] | None = None) -> None:
        self.refuse = refuse
        self.requests: list[UpgradeRequest] = []
        self.conns: list[WsConnection] = []
        self.messages: list[str | bytes] = []
        self.closed: list[int | None] = []
        self.failed: list[str | None] = []  # each closed connection's ``failed``

    def ws_accept(self, request: UpgradeRequest) -> HttpResponse | None:
        self.requests.append(request)
        return self.refuse(request) if self.refuse else None

    def ws_opened(self, conn: WsConnection) -> None:
        self.conns.append(conn)

    def ws_message(self, conn: WsConnection, data: str | bytes) -> None:
        self.messages.append(data)
        if data == "server-close":
            conn.close(4000, "bye")
        elif data == "boom":
            raise RuntimeError("handler failure")
        elif isinstance(data, str):
            conn.send_text(data)
        else:
            conn.send_bytes(data)

    def ws_closed(self, conn: WsConnection, code: int | None) -> None:
        self.closed.append(code)
        self.failed.append(conn.failed)
        self.conns.remove(conn)


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/hello":
        status, body = 200, b"hello"
    else:
        status, body = 404, b"not found"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serve(handler: EchoHandler, http: str = DEFAULT_HTTP, **opts: Any) -> AsyncIterator[int]:
    config = uvicorn.Config(
        app=hello_app,
        ws=make_ws_protocol_class(lambda: handler, **opts),
        host="127.0.0.1",
        port=0,
        lifespan="off",
        http=http,
        log_config=None,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done())
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, IO_TIMEOUT)


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    OPEN_WRITERS.append(writer)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
    writer.close()
    return data


class RawClient:
    """A WebSocket client on a plain socket: full control over the bytes sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.head = b""
        self.body = b""

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/chsk?client-id=raw",
        key: str | None = None,
        extra: str = "",
        version: str = "13",
    ) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        OPEN_WRITERS.append(writer)
        if key is None:
            key = base64.b64encode(os.urandom(16)).decode()
        key_line = f"Sec-WebSocket-Key: {key}\r\n" if key else ""
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: {version}\r\n"
                f"{key_line}{extra}\r\n"
            ).encode()
        )
        self = cls(reader, writer)
        self.head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
        self.status = int(self.head.split(b" ", 2)[1])
        if self.status == 101:
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            fields = dict(line.split(": ", 1) for line in self.head.decode("latin-1").split("\r\n")[1:] if line)
            assert {k.lower(): v for k, v in fields.items()}["sec-websocket-accept"] == accept
        else:
            self.body = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
        return self

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> None:
        first = (0x80 if fin else 0) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            header = bytes((first, mbit | n))
        elif n < 65536:
            header = struct.pack("!BBH", first, mbit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        self.writer.write(header + payload)

    async def recv_frame(self) -> tuple[bool, int, bytes]:
        async def read() -> tuple[bool, int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "server frames must not be masked"
            return bool(b0 & 0x80), b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), IO_TIMEOUT)

    async def recv_close(self) -> int | None:
        """Skip data frames until a close frame; its code (None if empty)."""
        for _ in range(100):
            _fin, op, payload = await self.recv_frame()
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if payload else None
        raise AssertionError("no close frame")

    async def at_eof(self) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(), IO_TIMEOUT)
        except ConnectionResetError:
            return True
        return data == b""

    def close(self) -> None:
        self.writer.close()


class ClientListener(picows.WSListener):
    def __init__(self) -> None:
        self.frames: list[tuple[picows.WSMsgType, bytes]] = []
        self.close_code: int | None = None

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        else:
            self.frames.append((frame.msg_type, frame.get_payload_as_bytes()))

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


async def picows_connect(port: int, path: str = "/chsk?client-id=pc") -> tuple[picows.WSTransport, ClientListener]:
    tr, listener = await picows.ws_connect(ClientListener, f"ws://127.0.0.1:{port}{path}")
    assert isinstance(listener, ClientListener)
    return tr, listener


# --------------------------------------------------------------------------------------------
# Pinned picows internals


def test_picows_pinned_version_and_internal_protocol() -> None:
    """The bridge subclasses ``picows.picows.WSProtocol`` and calls its undocumented 15-argument
    constructor (what ``ws_create_server`` does). If this fails, re-check websocket.py's
    ``_PicowsInUvicorn.__init__`` against the new picows, then move the pin."""
    assert picows.__version__ == PINNED_PICOWS, (
        f"picows {picows.__version__} installed; the bridge was verified against {PINNED_PICOWS}"
    )
    from picows.picows import WSProtocol

    assert issubclass(ws_mod._PicowsInUvicorn, WSProtocol)
    assert issubclass(WSProtocol, asyncio.BufferedProtocol)

    async def construct() -> None:
        cls = make_ws_protocol_class(EchoHandler)
        proto = cls(config=None, server_state=None, app_state=None)
        assert proto.transport is None and proto.listener is None

    run(construct)


# --------------------------------------------------------------------------------------------
# Frames


@pytest.mark.parametrize(
    ("n", "header"),
    [
        (0, b"\x81\x00"),
        (5, b"\x81\x05"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_build_text_frame_lengths(n: int, header: bytes) -> None:
    payload = b"x" * n
    assert build_text_frame(payload) == header + payload
    assert build_text_frame("x" * n) == header + payload


def test_build_text_frame_rfc_example() -> None:
    # RFC 6455 §5.7: a single-frame unmasked text message containing "Hello"
    assert build_text_frame("Hello") == bytes.fromhex("810548656c6c6f")
    # UTF-8 length, not character count
    assert build_text_frame("é") == b"\x81\x02" + "é".encode()
    # §5.7: 256 bytes / 64 KiB binary headers use the same length encodings
    assert ws_mod.build_binary_frame(b"\0" * 256)[:4] == bytes.fromhex("827e0100")
    assert ws_mod.build_binary_frame(b"\0" * 65536)[:10] == bytes.fromhex("827f0000000000010000")
    assert ws_mod.build_close_frame(1000) == b"\x88\x02\x03\xe8"


# --------------------------------------------------------------------------------------------
# One port, both transports


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("http", HTTP_IMPLS)
def test_http_and_websocket_share_the_port(http: str, loop: str) -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler, http=http) as port:
            resp = await http_get(port, "/hello")
            assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(b"hello")

            # picows client: text and binary echo
            tr, listener = await picows_connect(port)
            tr.send(picows.WSMsgType.TEXT, "héllo")
            tr.send(picows.WSMsgType.BINARY, b"\x00\x01\xff")
            await wait_until(lambda: len(listener.frames) == 2)
            assert listener.frames == [
                (picows.WSMsgType.TEXT, "héllo".encode()),
                (picows.WSMsgType.BINARY, b"\x00\x01\xff"),
            ]

            # raw client on the same port: text, binary, a fragmented text message, a ping
            raw = await RawClient.connect(port)
            assert raw.status == 101
            raw.send_frame(0x1, b"raw text")
            assert await raw.recv_frame() == (True, 0x1, b"raw text")
            raw.send_frame(0x2, b"\x80\x81")
            assert await raw.recv_frame() == (True, 0x2, b"\x80\x81")
            raw.send_frame(0x1, b"frag", fin=False)
            raw.send_frame(0x9, b"ping-in-between")
            raw.send_frame(0x0, "mént".encode(), fin=False)
            raw.send_frame(0x0, b"ed", fin=True)
            assert await raw.recv_frame() == (True, 0xA, b"ping-in-between")
            assert await raw.recv_frame() == (True, 0x1, "fragménted".encode())
            # a medium message (16-bit length) and a big one (64-bit length, grows the read buffer)
            raw.send_frame(0x2, b"m" * 1000)
            assert await raw.recv_frame() == (True, 0x2, b"m" * 1000)
            raw.send_frame(0x2, b"b" * 200_000)
            assert await raw.recv_frame() == (True, 0x2, b"b" * 200_000)

            # HTTP still works on the port after upgrades
            resp = await http_get(port, "/hello")
            assert resp.endswith(b"hello")

            req = handler.requests[0]
            assert req.method == "GET" and req.path == "/chsk" and req.query == [("client-id", "pc")]
            assert req.client is not None and req.client[0] == "127.0.0.1"

            raw.send_frame(0x8, struct.pack("!H", 1000))
            assert await raw.recv_close() == 1000
            assert await raw.at_eof()
            tr.send_close(picows.WSCloseCode.OK)
            await asyncio.wait_for(tr.wait_disconnected(), IO_TIMEOUT)
            await wait_until(lambda: len(handler.closed) == 2)
            assert handler.closed == [1000, 1000]

    run(main, loop)


def test_upgrade_request_fields() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            raw = await RawClient.connect(
                port,
                path="/a%20b/chsk?client-id=c%2F1&csrf-token=Q%2FA4%2B&flag=&x=1&x=2",
                extra='Cookie: ring-session=abc%3D; theme="dark"\r\nOrigin: http://example.com\r\n',
            )
            assert raw.status == 101
            raw.close()
            await wait_until(lambda: handler.closed == [None])
        req = handler.requests[0]
        assert req.path == "/a b/chsk"
        assert req.query_string == "client-id=c%2F1&csrf-token=Q%2FA4%2B&flag=&x=1&x=2"
        assert req.query == [("client-id", "c/1"), ("csrf-token", "Q/A4+"), ("flag", ""), ("x", "1"), ("x", "2")]
        assert req.param("csrf-token") == "Q/A4+"
        assert req.cookies == {"ring-session": "abc%3D", "theme": "dark"}
        assert req.header("Origin") == "http://example.com"
        assert ("origin", "http://example.com") in req.headers

    run(main)


# --------------------------------------------------------------------------------------------
# Refusals and bad handshakes


def test_refused_upgrade_is_a_plain_http_response() -> None:
    handler = EchoHandler(
        refuse=lambda req: (
            None
            if req.param("csrf-token") == "good"
            else HttpResponse(403, [("Content-Type", "text/plain; charset=utf-8")], b"Bad CSRF token")
        )
    )

    async def main() -> None:
        async with serve(handler) as port:
            raw = await RawClient.connect(port, path="/chsk?client-id=x")
            assert raw.status == 403
            head = raw.head.decode().lower()
            assert head.startswith("http/1.1 403 forbidden\r\n")
            assert "content-length: 14\r\n" in head and "connection: close\r\n" in head
            assert "content-type: text/plain; charset=utf-8\r\n" in head
            assert raw.body == b"Bad CSRF token"
            ok = await RawClient.connect(port, path="/chsk?client-id=x&csrf-token=good")
            assert ok.status == 101
            ok.send_frame(0x1, b"still fine")
            assert await ok.recv_frame() == (True, 0x1, b"still fine")
            ok.close()
            await wait_until(lambda: handler.closed == [None])
        assert len(handler.requests) == 2

    run(main)


@pytest.mark.parametrize(
    ("key", "version", "status"),
    [("", "13", 400), ("not-base64!", "13", 400), ("c2hvcnQ=", "13", 400), (None, "8", 426)],
)
def test_bad_handshake(key: str | None, version: str, status: int) -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            raw = await RawClient.connect(port, key=key, version=version)
            assert raw.status == status
            assert b"content-length: " in raw.head.lower()
        assert handler.requests == []  # the app never sees an invalid handshake

    run(main)


def test_ws_accept_raising_gives_500() -> None:
    def refuse(_req: UpgradeRequest) -> HttpResponse | None:
        raise RuntimeError("app bug")

    async def main() -> None:
        async with serve(EchoHandler(refuse=refuse)) as port:
            raw = await RawClient.connect(port)
            assert raw.status == 500

    run(main)


# --------------------------------------------------------------------------------------------
# Closing


def test_client_close_handshake_reports_code() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            raw = await RawClient.connect(port)
            raw.send_frame(0x8, struct.pack("!H", 1000) + b"CLOSE_NORMAL")
            assert await raw.recv_close() == 1000  # echoed
            assert await raw.at_eof()  # server drops TCP after the echo
            await wait_until(lambda: handler.closed == [1000])

            raw = await RawClient.connect(port)
            raw.send_frame(0x8, struct.pack("!H", 3000) + b"CLOSE_ABNORMAL")
            assert await raw.recv_close() == 3000
            await wait_until(lambda: handler.closed == [1000, 3000])

            raw = await RawClient.connect(port)
            raw.send_frame(0x8, b"")  # no status code
            assert await raw.recv_close() == 1000
            await wait_until(lambda: handler.closed == [1000, 3000, 1005])
            assert handler.failed == [None, None, None]  # valid closes, whatever their code

            for frame, code in ((struct.pack("!H", 2999), 1002),  # unassigned: picows refuses it
                                (struct.pack("!H", 1000) + b"\xff", 1007),  # a reason that is not UTF-8: picows too
                                (struct.pack("!H", 1006), 1002),  # must not be sent: we refuse it
                                (struct.pack("!H", 5000), 1002)):  # unassigned: we refuse it
                raw = await RawClient.connect(port)
                raw.send_frame(0x8, frame)
                assert await raw.recv_close() == code
            await wait_until(lambda: len(handler.closed) == 7)
            assert sorted(map(str, handler.failed[3:])) == [  # in the order the connections went
                "invalid close frame (close code 1006)", "invalid close frame (close code 5000)",
                "malformed frame (closed 1002)", "malformed frame (closed 1007)"]

    run(main)


def test_abrupt_disconnect_and_server_close() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler, close_timeout=0.2) as port:
            raw = await RawClient.connect(port)
            raw.send_frame(0x1, b"x")
            await raw.recv_frame()
            raw.writer.transport.abort()  # type: ignore[attr-defined]
            await wait_until(lambda: handler.closed == [None])

            # server-initiated close: the client echoes, ws_closed gets the peer's echo
            tr, listener = await picows_connect(port)
            tr.send(picows.WSMsgType.TEXT, "server-close")
            await asyncio.wait_for(tr.wait_disconnected(), IO_TIMEOUT)
            assert listener.close_code == 4000
            await wait_until(lambda: handler.closed == [None, 4000])

            # server-initiated close, peer never answers: dropped after close_timeout
            raw = await RawClient.connect(port)
            raw.send_frame(0x1, b"server-close")
            assert await raw.recv_close() == 4000
            assert await raw.at_eof()
            await wait_until(lambda: handler.closed == [None, 4000, 4000])
            assert handler.conns == []

    run(main)


def test_handler_exception_closes_1011_only_that_connection() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            good = await RawClient.connect(port)
            bad = await RawClient.connect(port)
            bad.send_frame(0x1, b"boom")
            assert await bad.recv_close() == 1011
            good.send_frame(0x1, b"ok")
            assert await good.recv_frame() == (True, 0x1, b"ok")
            good.close()

    run(main)


def test_send_after_close_is_dropped() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            raw = await RawClient.connect(port)
            await wait_until(lambda: len(handler.conns) == 1)
            conn = handler.conns[0]
            conn.close(1000)
            conn.send_text("late")
            conn.send_frame(build_text_frame("late"))
            conn.close(1001)  # idempotent
            _fin, op, payload = await raw.recv_frame()
            assert (op, payload) == (0x8, b"\x03\xe8")
            raw.send_frame(0x8, b"\x03\xe8")
            assert await raw.at_eof()
            await wait_until(lambda: handler.closed == [1000])

    run(main)


def test_server_shutdown_closes_websockets_1001() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            raw = await RawClient.connect(port)
            await wait_until(lambda: len(handler.conns) == 1)
        # serve() has exited: uvicorn's shutdown called our protocol's shutdown()
        assert await raw.recv_close() == 1001
        assert handler.closed == [1001]

    run(main)


# --------------------------------------------------------------------------------------------
# Limits and malformed input


def test_oversized_message_closes_1009_others_unaffected() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            other = await RawClient.connect(port)
            big = await RawClient.connect(port)
            # a single frame announcing more than the limit: closed on its header alone
            n = DEFAULT_MAX_MESSAGE_SIZE + 1
            big.writer.write(struct.pack("!BBQ", 0x82, 0x80 | 127, n) + os.urandom(4) + b"\0" * 1000)
            assert await big.recv_close() == 1009
            assert await big.at_eof()
            # exactly the limit is fine (picows client sends it masked)
            tr, listener = await picows_connect(port)
            tr.send(picows.WSMsgType.BINARY, b"\1" * DEFAULT_MAX_MESSAGE_SIZE)
            await wait_until(lambda: len(listener.frames) == 1, timeout=10)
            assert listener.frames[0][1] == b"\1" * DEFAULT_MAX_MESSAGE_SIZE
            other.send_frame(0x1, b"alive")
            assert await other.recv_frame() == (True, 0x1, b"alive")
            other.close()
            tr.disconnect()
        assert 1009 in handler.closed

    run(main)


def test_fragmented_oversized_message_closes_1009() -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler, max_message_size=1000) as port:
            other = await RawClient.connect(port)
            big = await RawClient.connect(port)
            big.send_frame(0x1, b"a" * 600, fin=False)
            big.send_frame(0x0, b"a" * 600, fin=False)
            assert await big.recv_close() == 1009
            big.send_frame(0x8, b"\x03\xf1")  # client answers the close
            assert await big.at_eof()
            other.send_frame(0x1, b"a" * 400, fin=False)
            other.send_frame(0x0, b"b" * 600, fin=True)
            assert await other.recv_frame() == (True, 0x1, b"a" * 400 + b"b" * 600)
            other.close()
            await wait_until(lambda: sorted(handler.closed, key=str) == [1009, None] or len(handler.closed) == 2)
        assert handler.closed[0] == 1009
        assert not any(m for m in handler.messages if len(m) > 1000)

    run(main)


@pytest.mark.parametrize(
    ("bad_bytes", "code"),
    [
        (struct.pack("!BB", 0x81, 0x02) + b"hi", 1002),  # unmasked client frame
        (struct.pack("!BB", 0x83, 0x80) + b"\0\0\0\0", 1002),  # reserved opcode
        (struct.pack("!BB", 0x09, 0x80) + b"\0\0\0\0", 1002),  # fragmented control frame
        (struct.pack("!BBH", 0x81, 0x80 | 126, 5) + b"\0\0\0\0hello", 1002),  # non-minimal length
        (struct.pack("!BB", 0x80, 0x82) + b"\0\0\0\0hi", 1002),  # continuation with nothing to continue
        (struct.pack("!BB", 0x81, 0x82) + b"\0\0\0\0\xff\xfe", 1007),  # invalid UTF-8 text
    ],
)
def test_malformed_frame_closes_only_that_connection(bad_bytes: bytes, code: int) -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            good = await RawClient.connect(port)
            bad = await RawClient.connect(port)
            bad.writer.write(bad_bytes)
            assert await bad.recv_close() == code
            bad.send_frame(0x8, struct.pack("!H", code))
            assert await bad.at_eof()
            good.send_frame(0x1, b"unaffected")
            assert await good.recv_frame() == (True, 0x1, b"unaffected")
            good.close()
            await wait_until(lambda: len(handler.closed) == 2)
        assert handler.closed[0] == code

    run(main)


# --------------------------------------------------------------------------------------------
# Fan-out


@pytest.mark.parametrize("loop", LOOPS)
def test_send_frame_fan_out_to_50_connections(loop: str) -> None:
    handler = EchoHandler()

    async def main() -> None:
        async with serve(handler) as port:
            clients = [await picows_connect(port, f"/chsk?client-id=c{i}") for i in range(50)]
            await wait_until(lambda: len(handler.conns) == 50)
            for text in ("hello everyone", "é" * 200, "x" * 70_000):
                frame = build_text_frame(text)
                for conn in handler.conns:
                    conn.send_frame(frame)
                    assert conn.buffered_bytes >= 0
            await wait_until(lambda: all(len(listener.frames) == 3 for _tr, listener in clients))
            for _tr, listener in clients:
                assert listener.frames == [
                    (picows.WSMsgType.TEXT, b"hello everyone"),
                    (picows.WSMsgType.TEXT, ("é" * 200).encode()),
                    (picows.WSMsgType.TEXT, b"x" * 70_000),
                ]
            for tr, _listener in clients:
                tr.send_close(picows.WSCloseCode.OK)
            await wait_until(lambda: len(handler.closed) == 50)
        assert handler.closed == [1000] * 50

    run(main, loop)
