"""The fan-out write loop: the same frame to every open connection, slow consumers reported."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from csente.fanout import write_frame


class Transport:
    def __init__(self, backlog: int = 0) -> None:
        self.written: list[bytes] = []
        self.backlog = backlog

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog


def conn(backlog: int = 0, closing: bool = False, closed: bool = False) -> Any:
    return SimpleNamespace(_raw=Transport(backlog), _closing=closing, closed=closed)


def test_every_open_connection_gets_the_same_frame_object():
    conns = [conn() for _ in range(3)]
    assert write_frame(conns, b"\x81\x02hi", 100) is None
    assert all(c._raw.written == [b"\x81\x02hi"] for c in conns)
    assert len({id(c._raw.written[0]) for c in conns}) == 1


def test_closing_and_closed_connections_are_skipped():
    conns = [conn(closing=True), conn(closed=True), conn()]
    write_frame(conns, b"f", 100)
    assert [len(c._raw.written) for c in conns] == [0, 0, 1]


def test_connections_over_the_cap_come_back_in_order():
    conns = [conn(backlog=50), conn(backlog=500), conn(backlog=101), conn(backlog=100)]
    assert write_frame(conns, b"f", 100) == [conns[1], conns[2]]
