"""The fuzzing run: hostile inputs against a running server while healthy clients receive a numbered stream.

:func:`fuzz` drives one server (any ``sente serve`` of :mod:`tests.fuzz.app`) for ``seconds``:

* a *driver* WebSocket sends ``[:fuzz/broadcast n]`` every ``interval`` seconds (n = 0, 1, ...), and the app
  broadcasts ``[:fuzz/seq n]`` to every client;
* ``healthy`` WebSocket clients (the driver among them) read everything and record the numbers they get;
* ``workers`` tasks send what :mod:`tests.fuzz.inputs` makes, each on its own connection, one after another:
  WebSocket upgrades followed by bursts of mutated frames, Ajax GETs and POSTs, raw HTTP heads; each connection
  is read briefly and dropped (closed, or cut).

The :class:`Report` says what was sent and what each healthy client missed, got twice or out of order; the test
asserts none, that the server still answers, and that its log holds no traceback and no ERROR line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sente.edn import Keyword
from sente.packers import EdnPacker
from tests.fuzz import inputs
from tests.sente.conformance.replay import client_frame, read_frame, read_http_response

EDN = EdnPacker()
SEQ = Keyword("fuzz/seq")
IO_TIMEOUT = 5.0


@dataclass
class Report:
    seed: int
    seconds: float
    sent: Counter[str] = field(default_factory=Counter)
    """Inputs sent, by class (ws-upgrade, ws-frames, ajax, http)."""
    statuses: Counter[int] = field(default_factory=Counter)
    """HTTP statuses the server answered (0: it closed without one)."""
    stream: int = 0
    """Numbered broadcasts the driver asked for."""
    problems: dict[str, str] = field(default_factory=dict)
    """Per healthy client: what it missed, got twice or out of order (empty when it got the whole stream)."""

    def summary(self) -> str:
        total = sum(self.sent.values())
        return (f"seed {self.seed}: {total} hostile inputs in {self.seconds:.0f} s ({dict(self.sent)}), "
                f"statuses {dict(sorted(self.statuses.items()))}, {self.stream} numbered broadcasts to "
                f"{len(self.problems) or 'every'} healthy client(s) {'with problems' if self.problems else 'whole'}")


async def _upgrade(port: int, params: dict[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /chsk?{urlencode(params)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    _, status, _, _, _ = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
    return reader, writer, status


class Healthy:
    """One well-behaved WebSocket client recording the numbered broadcasts it receives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[int] = []
        self.closed: str | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        reader, self.writer, status = await _upgrade(port, {"client-id": self.name, "uid": self.name})
        assert status == 101, f"{self.name}: upgrade answered {status}"
        _, _, payload = await asyncio.wait_for(read_frame(reader), IO_TIMEOUT)  # the handshake
        assert b"chsk/handshake" in payload
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                _, opcode, payload = await read_frame(reader)
                if opcode == 0x8:
                    self.closed = f"closed by the server: {payload[:2].hex()}"
                    return
                if opcode != 0x1:
                    continue
                events, _ = EDN.unpack_envelope(payload.decode())
                if isinstance(events, list):
                    self.got.extend(e[1] for e in events if isinstance(e, list) and e and e[0] == SEQ)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self.closed = f"connection lost: {e!r}"

    def send(self, text: str) -> None:
        assert self.writer is not None
        self.writer.write(client_frame(0x1, text.encode()))

    def problem(self, expected: int) -> str | None:
        if self.got == list(range(expected)):
            return None
        missing = sorted(set(range(expected)) - set(self.got))
        twice = sorted(n for n, c in Counter(self.got).items() if c > 1)
        ordered = self.got == sorted(self.got)
        return (f"missing {len(missing)} (first {missing[:5]}), twice {twice[:5]}, in order {ordered}"
                + (f", {self.closed}" if self.closed else ""))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.writer is not None:
            self.writer.close()


async def _read_briefly(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What arrives within ``seconds`` (stops at EOF or a reset)."""
    out = b""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        while (left := deadline - time.monotonic()) > 0:
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                break
            out += chunk
    return out


def _status(response: bytes) -> int:
    if response.startswith(b"HTTP/1.") and len(response) >= 12 and response[9:12].isdigit():
        return int(response[9:12])
    return 0


async def _one(rng: random.Random, port: int, report: Report) -> None:
    """One hostile connection."""
    kind = rng.random()
    host = f"127.0.0.1:{port}"
    if kind < 0.4:
        params = {"client-id": inputs.client_id(rng), "uid": inputs.uid(rng)}
        reader, writer, status = await _upgrade(port, params)
        report.sent["ws-upgrade"] += 1
        report.statuses[status] += 1
        try:
            if status == 101:
                for data in inputs.ws_frames(rng):
                    writer.write(data)
                    report.sent["ws-frames"] += 1
                await _read_briefly(reader, rng.choice((0.0, 0.05, 0.2)))
        finally:
            writer.close()
        return
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
    try:
        if kind < 0.7:
            writer.write(inputs.ajax_request(rng, host))
            report.sent["ajax"] += 1
        else:
            writer.write(inputs.http_head(rng, host))
            report.sent["http"] += 1
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        report.statuses[_status(await _read_briefly(reader, rng.choice((0.05, 0.2, 0.5))))] += 1
    finally:
        writer.close()


async def _attacker(rng: random.Random, port: int, report: Report, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            await _one(rng, port, report)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            report.statuses[0] += 1  # the server cut a hostile connection: fine


async def fuzz(port: int, seconds: float, seed: int, *, healthy: int = 6, workers: int = 6,
               interval: float = 0.02) -> Report:
    """Run the fuzzer against the server on ``port``; see the module docstring."""
    report = Report(seed, seconds)
    # asyncio warns when a hostile connection the server cut is written to again: expected here, not news
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    clients = [Healthy(f"healthy-{i}") for i in range(healthy)]
    for client in clients:
        await client.open(port)
    driver = clients[0]
    deadline = time.monotonic() + seconds
    attackers = [asyncio.get_running_loop().create_task(_attacker(random.Random(seed * 1000 + i), port, report,
                                                                   deadline)) for i in range(workers)]
    try:
        while time.monotonic() < deadline:
            driver.send(f"[[:fuzz/broadcast {report.stream}] nil]")
            report.stream += 1
            await asyncio.sleep(interval)
        await asyncio.gather(*attackers)
        settle = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < settle and any(len(c.got) < report.stream and not c.closed for c in clients):
            await asyncio.sleep(0.05)
        for client in clients:
            problem = client.problem(report.stream)
            if problem is not None:
                report.problems[client.name] = problem
    finally:
        for task in attackers:
            task.cancel()
        for client in clients:
            client.close()
    return report


def env_seconds(default: float) -> float:
    """``CSENTE_FUZZ_SECONDS`` (how long the CI test fuzzes), else ``default``."""
    return float(os.environ.get("CSENTE_FUZZ_SECONDS", default))


def env_seed() -> int:
    """``CSENTE_FUZZ_SEED``, else a random one (printed by the test, so a failure can be replayed)."""
    value = os.environ.get("CSENTE_FUZZ_SEED")
    return int(value) if value else random.randrange(2**31)
