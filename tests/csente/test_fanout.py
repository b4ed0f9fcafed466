"""The fan-out write loop: the same frame to every open connection, slow consumers reported; on a plain TCP socket
with nothing queued the frame goes to the kernel from C, otherwise through the transport, never out of order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from csente.fanout import write_frame
from sente.transport.connection import _socket_fd


class Transport:
    def __init__(self, backlog: int = 0) -> None:
        self.written: list[bytes] = []
        self.backlog = backlog

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog


def conn(backlog: int = 0, closing: bool = False, closed: bool = False) -> Any:
    return SimpleNamespace(_raw=Transport(backlog), _fd=-1, _closing=closing or closed, closed=closed)


def test_every_open_connection_gets_the_same_frame_object():
    conns = [conn() for _ in range(3)]
    assert write_frame(conns, b"\x81\x02hi", 100) is None
    assert all(c._raw.written == [b"\x81\x02hi"] for c in conns)
    assert len({id(c._raw.written[0]) for c in conns}) == 1


def test_closing_and_closed_connections_are_skipped():
    conns = [conn(closing=True), conn(closed=True), conn()]
    write_frame(conns, b"f", 100)
    assert [len(c._raw.written) for c in conns] == [0, 0, 1]


def test_a_tuple_of_connections_is_written_as_it_is():
    conns = (conn(), conn(closing=True))
    assert write_frame(conns, b"f", 100) is None
    assert [c._raw.written for c in conns] == [[b"f"], []]


def test_connections_over_the_cap_come_back_in_order():
    conns = [conn(backlog=50), conn(backlog=500), conn(backlog=101), conn(backlog=100)]
    assert write_frame(conns, b"f", 100) == [conns[1], conns[2]]


# -- real sockets ----------------------------------------------------------------------------------------------------

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"uvloop": uvloop.new_event_loop,
                                                             "asyncio": asyncio.new_event_loop}


class Counting:
    """A real transport whose ``write`` calls are counted (and passed on)."""

    def __init__(self, raw: asyncio.Transport) -> None:
        self.raw = raw
        self.writes = 0
        self.is_closing = raw.is_closing
        self.get_write_buffer_size = raw.get_write_buffer_size

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.raw.write(data)


def with_socket(loop: str, body: Callable[[Any, socket.socket], Coroutine[Any, Any, None]]) -> None:
    """Run ``body(conn, peer)`` on ``loop``: ``conn`` a connection over one accepted loopback socket, ``peer`` the
    client's end (blocking, 5 s timeout)."""

    async def main() -> None:
        accepted: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(transport)  # type: ignore[arg-type]

        server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", 0)
        peer = socket.create_connection(server.sockets[0].getsockname()[:2], timeout=5)
        raw = await asyncio.wait_for(accepted, 5)
        assert _socket_fd(raw) >= 0
        try:
            await body(SimpleNamespace(_raw=Counting(raw), _fd=_socket_fd(raw), _closing=False, closed=False), peer)
        finally:
            raw.close()
            peer.close()
            server.close()

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main())


def read(peer: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = peer.recv(size - len(out))
        assert chunk, "connection closed early"
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("loop", LOOPS)
def test_an_idle_socket_gets_the_frame_from_c_not_through_the_transport(loop: str) -> None:
    async def body(c: Any, peer: socket.socket) -> None:
        assert write_frame([c], b"\x81\x02hi", 100) is None
        assert c._raw.writes == 0
        assert read(peer, 4) == b"\x81\x02hi"

    with_socket(loop, body)


@pytest.mark.parametrize("loop", LOOPS)
def test_what_the_kernel_does_not_take_is_queued_by_the_transport(loop: str) -> None:
    frame = bytes(range(256)) * 32768  # 8 MiB: more than the socket buffers hold while the peer is not reading

    async def body(c: Any, peer: socket.socket) -> None:
        assert write_frame([c], frame, 1 << 30) is None
        assert c._raw.writes == 1 and c._raw.get_write_buffer_size() > 0
        received = await asyncio.to_thread(read, peer, len(frame))
        assert received == frame

    with_socket(loop, body)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_frame_waits_behind_bytes_the_transport_holds(loop: str) -> None:
    first = b"A" * (8 << 20)

    async def body(c: Any, peer: socket.socket) -> None:
        c._raw.raw.write(first)
        assert c._raw.get_write_buffer_size() > 0
        assert write_frame([c], b"\x81\x02hi", 1 << 30) is None
        assert c._raw.writes == 1
        received = await asyncio.to_thread(read, peer, len(first) + 4)
        assert received == first + b"\x81\x02hi"

    with_socket(loop, body)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_closing_transport_gets_nothing_more_on_its_socket(loop: str) -> None:
    async def body(c: Any, peer: socket.socket) -> None:
        c._raw.raw.close()  # the connection hears of it a loop pass later; its descriptor is open until then
        c._raw.write = lambda data: None  # what the transport does with the frame is the transport's affair
        write_frame([c], b"\x81\x02hi", 100)
        await asyncio.sleep(0.01)
        assert peer.recv(10) == b""  # the close, and no frame before it

    with_socket(loop, body)
