"""The per-recipient write loop of a flush: the Python loop it replaces against csente.fanout.write_frame.

Both write one prebuilt frame to N connections through transports whose ``write`` is a C no-op, so what is
measured is the loop's own cost per connection (the real ``send`` system call comes on top, equal for both).

Run: python3 -m pytest bench/test_fanout_write.py --benchmark-columns=median
"""

from __future__ import annotations

import collections
from types import SimpleNamespace
from typing import Any

import pytest

from csente.fanout import write_frame
from sente.transport.frames import build_text_frame

N = 5000
CAP = 8 * 1024 * 1024
FRAME = build_text_frame("[[[:test/pushed " + "x" * 80 + "]] nil]")


class Conn:
    """What the loop needs of the picows bridge's WsConnection, with its send_frame/buffered_bytes as written."""

    def __init__(self) -> None:
        self._closing = False
        self.closed = False
        self._fd = -1  # no socket: write_frame goes through the transport's write
        self._raw = SimpleNamespace(write=collections.deque(maxlen=0).append, get_write_buffer_size=int)

    def send_frame(self, frame: bytes) -> None:
        if not self._closing and not self.closed:
            self._raw.write(frame)

    @property
    def buffered_bytes(self) -> int:
        return int(self._raw.get_write_buffer_size())


def python_loop(conns: dict[Any, Conn], handles: list[Any], frame: bytes, cap: int) -> list[Conn]:
    slow = []
    for handle in handles:
        conn = conns.get(handle)
        if conn is None:
            continue
        conn.send_frame(frame)
        if conn.buffered_bytes > cap:
            slow.append(conn)
    return slow


@pytest.fixture(scope="module")
def conns() -> list[Conn]:
    return [Conn() for _ in range(N)]


def test_python_write_loop(benchmark: Any, conns: list[Conn]) -> None:
    table = {c: c for c in conns}
    benchmark.group = f"write one frame to {N} connections"
    benchmark(python_loop, table, conns, FRAME, CAP)


def test_cython_write_frame(benchmark: Any, conns: list[Conn]) -> None:
    benchmark.group = f"write one frame to {N} connections"
    benchmark(write_frame, conns, FRAME, CAP)
