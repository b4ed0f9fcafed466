"""One frame to N real sockets: the fan-out write loop's cost per delivery, against raw picows's ``send``.

Loopback TCP connections on uvloop; the server side of each is an asyncio transport, the client side a plain socket
drained between rounds (not timed). Each round writes one ~120-byte text frame to every connection, as a flush
with one event per frame does (``sente bench`` rate mode), and is timed in this thread's CPU time, the kernel's
``send`` included. Three loops per round, in turn:

* ``picows``: picows's ``WSTransport.send`` per connection (frames the payload, ``send`` on the socket): raw
  picows's broadcast, the baseline;
* ``transport.write``: ``csente.fanout.write_frame`` through each transport's ``write`` (the loop before direct
  sends: connections without a descriptor);
* ``direct send``: ``write_frame`` sending the frame on each socket from C, the transport as fallback.

Run: python -m bench.socket_write [-n 1000] [--rounds 200]; prints medians per delivery and ratios to picows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import time
from typing import Any

import picows
import uvloop

from csente.fanout import write_frame
from sente.bench.metrics import raise_nofile
from sente.transport.connection import _socket_fd
from sente.transport.frames import build_text_frame

PAYLOAD = "[[[:bench/f \"F1:1732780800123456789:" + "x" * 77 + "\"]] nil]"


class Conn:
    """What write_frame reads of a WsConnection."""

    __slots__ = ("_closing", "_fd", "_raw", "closed")

    def __init__(self, raw: asyncio.Transport, fd: int) -> None:
        self._raw, self._fd, self._closing, self.closed = raw, fd, False, False


async def connect(n: int) -> tuple[list[asyncio.Transport], list[socket.socket]]:
    accepted: list[asyncio.Transport] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: _Sink(accepted), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    clients = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        clients.append(s)
        if len(clients) % 50 == 0:  # let the loop accept them (the listen backlog is finite)
            await asyncio.sleep(0)
    while len(accepted) < n:
        await asyncio.sleep(0.01)
    return accepted, clients


class _Sink(asyncio.Protocol):
    def __init__(self, accepted: list[asyncio.Transport]) -> None:
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accepted.append(transport)  # type: ignore[arg-type]


def drain(clients: list[socket.socket]) -> None:
    for s in clients:
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            pass


async def run(n: int, rounds: int) -> None:
    transports, clients = await connect(n)
    frame = build_text_frame(PAYLOAD)
    payload = PAYLOAD.encode()
    loop = asyncio.get_running_loop()
    # picows.pyi leaves out the constructor (is_client_side, transport, logger, loop): what its server protocol calls
    wstransports = [picows.WSTransport(False, t, logging.getLogger("bench"), loop)  # type: ignore[call-arg]
                    for t in transports]
    text = picows.WSMsgType.TEXT
    via_write = [Conn(t, -1) for t in transports]
    direct = [Conn(t, _socket_fd(t)) for t in transports]

    def picows_loop() -> None:
        for t in wstransports:
            t.send(text, payload)

    loops: dict[str, Any] = {
        "picows": picows_loop,
        "transport.write": lambda: write_frame(via_write, frame, 1 << 30),
        "direct send": lambda: write_frame(direct, frame, 1 << 30),
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, fn in loops.items():
            drain(clients)
            await asyncio.sleep(0)  # let the transports flush anything queued
            t0 = time.thread_time()
            fn()
            times[name].append((time.thread_time() - t0) / n * 1e6)
    drain(clients)
    base = statistics.median(times["picows"])
    print(f"one {len(frame)}-byte frame to {n} loopback sockets, {rounds} rounds (CPU µs per delivery, median):")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:16s} {med:6.2f} µs  ({med / base:.2f}× picows)")
    for t in transports:
        t.close()
    for s in clients:
        s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000, help="connections (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=200, help="frames per loop (default: %(default)s)")
    args = parser.parse_args()
    if raise_nofile() < 2 * args.n + 100:
        parser.error(f"-n {args.n} needs {2 * args.n + 100} open files; the limit is lower")
    uvloop.run(run(args.n, args.rounds))


if __name__ == "__main__":
    main()
