"""The load generator: picows WebSocket clients speaking each peer's protocol, in one or more processes.

Every event the publisher sends carries its send time: the event's data is the text ``F<phase>:<t_ns>:<padding>``
(``t_ns`` from ``time.monotonic_ns()``, one clock for every process on the machine). A client does not decode
Sente batches, Socket.IO packets or anything else: it finds every ``F<phase>:<t_ns>:`` in the frame with one
regular expression, so a frame holding a batch of 20 events counts 20 deliveries, and the client's cost is the
same for every peer.

Dialects (what a client says and waits for):

* ``sente``: ``ws://host/chsk?client-id=..&uid=..``; ready at ``[:chsk/handshake ...]``; answers
  ``:chsk/ws-ping`` with ``[:chsk/ws-pong]``; publishes ``[:bench/pub data]`` (:mod:`sente.bench.app`);
* ``sente-rig``: the same, against the reference test app (``sente.testapp`` or real Sente's rig): one session
  cookie and CSRF token from its ``/csrf-token`` (:class:`Auth`) sent by every client; publishes
  ``[:test/broadcast-all data]``, which the app pushes to every connected uid;
* ``socketio``: Engine.IO v4 over a raw WebSocket: ``0{...}`` (open) -> sends ``40`` -> ready at ``40{...}``;
  answers ``2`` with ``3``; publishes ``42["pub",data]``;
* ``picows``: ready at ``H``; publishes ``P<data>``.

A worker process (:func:`worker_main`) opens its share of the clients (bounded concurrency), reports when all are
ready, then follows the coordinator's commands on a pipe (``phase``, ``report``, ``stop``), sending its delivery
count every 100 ms. Latencies go into a histogram keyed by microseconds rounded down to 10 significant bits
(< 0.1 % error), so merging processes and taking percentiles is exact to that resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import ssl as ssl_module
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from ssl import SSLContext
from typing import Any

import picows

from ..edn import Keyword
from ..packers import get_packer
from .metrics import raise_nofile

TEXT = picows.WSMsgType.TEXT
BINARY = picows.WSMsgType.BINARY
CLOSE = picows.WSMsgType.CLOSE


def insecure_context(insecure: bool | None) -> SSLContext | None:
    """For ``wss://`` with ``--insecure``: TLS without certificate checks (a self-signed test server)."""
    if not insecure:
        return None
    context = ssl_module.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl_module.CERT_NONE
    return context


def bucket(us: int) -> int:
    """``us`` rounded down to 10 significant bits (exact below 1024 µs)."""
    if us < 1024:
        return max(us, 0)
    shift = us.bit_length() - 10
    return (us >> shift) << shift


def percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram of µs buckets, in milliseconds."""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = q * (total - 1), 0
    for key in sorted(hist):
        seen += hist[key]
        if seen > rank:
            return key / 1000.0
    return max(hist) / 1000.0


def event_text(phase: int, pad_to: int) -> str:
    """One event's data: ``F<phase>:<t_ns>:`` padded with ``x`` to ``pad_to`` characters."""
    head = f"F{phase}:{time.monotonic_ns()}:"
    return head + "x" * max(0, pad_to - len(head))


def publish_frame(dialect: str, packer_name: str = "edn") -> Callable[[str], Frame]:
    """How the publisher wraps one event's data for ``dialect``."""
    if dialect in ("sente", "sente-rig"):
        packer = get_packer(packer_name)
        pub = Keyword("bench/pub" if dialect == "sente" else "test/broadcast-all")
        return lambda data: sente_frame(packer.pack_envelope([pub, data], None))
    if dialect == "socketio":
        return lambda data: (TEXT, ('42["pub","' + data + '"]').encode())
    return lambda data: (TEXT, ("P" + data).encode())



@dataclass(frozen=True)
class Auth:
    """What a Sente server's CSRF check and session want: the token and the ``Cookie`` header value."""

    csrf_token: str
    cookie: str | None


def fetch_auth(chsk_url: str, token_path: str = "/csrf-token", timeout: float = 10.0) -> Auth:
    """One session and CSRF token from the reference app's token route next to ``chsk_url`` (ws:// or wss://)."""
    parts = urllib.parse.urlsplit(chsk_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    url = urllib.parse.urlunsplit((scheme, parts.netloc, token_path, "", ""))
    with urllib.request.urlopen(url, timeout=timeout) as r:
        token = r.read().decode().strip()
        cookie = r.headers.get("Set-Cookie")
    return Auth(token, cookie.split(";")[0] if cookie else None)


Frame = tuple[picows.WSMsgType, bytes]
"""A WebSocket message to send: text for a text packer (edn, transit), binary for a binary one."""


def sente_frame(wire: str | bytes) -> Frame:
    return (TEXT, wire.encode()) if isinstance(wire, str) else (BINARY, bytes(wire))


def ws_pong(packer: str) -> Frame:
    """``[:chsk/ws-pong]`` as a Sente client sends it with ``packer``."""
    return sente_frame(get_packer(packer).pack_envelope([Keyword("chsk/ws-pong")], None))


class Stats:
    """What one process's clients have seen in the current phase."""

    def __init__(self) -> None:
        self.phase = 0
        self.pattern = re.compile(rb"F0:(\d+):")
        self.received = 0
        self.frames = 0
        self.hist: dict[int, int] = {}
        self.first_ns = 0
        self.last_ns = 0
        self.closed = 0

    def start_phase(self, phase: int) -> None:
        self.phase, self.pattern = phase, re.compile(rb"F%d:(\d+):" % phase)
        self.received = self.frames = self.first_ns = self.last_ns = 0
        self.hist = {}


class Client(picows.WSListener):
    """One benchmark client (also the publisher, with ``stats=None``: it only keeps its connection alive)."""

    def __init__(self, dialect: str, stats: Stats | None, pong: Frame = (TEXT, b""), gzipped: bool = False) -> None:
        self.dialect = dialect
        self.gzipped = gzipped
        self.pong = pong
        self.stats = stats
        self.count = 0
        self.phase = 0
        self.transport: picows.WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.gone = True
        if self.stats is not None and self.ready.done():
            self.stats.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the handshake"))

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type not in (TEXT, BINARY):
            if frame.msg_type == CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if self.gzipped and data:  # Sente's gzip wrapper: 0x00 + the inner bytes, or 0x01 + a gzip member
            data = gzip.decompress(data[1:]) if data[0] == 1 else data[1:]
        stats = self.stats
        if stats is not None and self.ready.done():
            found = stats.pattern.findall(data)
            if found:
                now = time.monotonic_ns()
                if self.phase != stats.phase:
                    self.phase, self.count = stats.phase, 0
                self.count += len(found)
                stats.received += len(found)
                stats.frames += 1
                if not stats.first_ns:
                    stats.first_ns = now
                stats.last_ns = now
                hist = stats.hist
                for t in found:
                    key = bucket((now - int(t)) // 1000)
                    hist[key] = hist.get(key, 0) + 1
                return
        self._control(transport, data)

    def _control(self, transport: picows.WSTransport, data: bytes) -> None:
        if self.dialect in ("sente", "sente-rig"):
            if b"chsk/ws-ping" in data:
                transport.send(*self.pong)
            elif not self.ready.done() and b"chsk/handshake" in data:
                self.ready.set_result(None)
        elif self.dialect == "socketio":
            if data == b"2":
                transport.send(TEXT, b"3")
            elif data[:2] == b"40":
                if not self.ready.done():
                    self.ready.set_result(None)
            elif data[:1] == b"0":
                transport.send(TEXT, b"40")
        elif data == b"H" and not self.ready.done():
            self.ready.set_result(None)


def client_url(base: str, dialect: str, name: str, auth: Auth | None = None) -> str:
    if dialect not in ("sente", "sente-rig"):
        return base
    query = {"client-id": name, "uid": name, **({"csrf-token": auth.csrf_token} if auth else {})}
    return f"{base}{'&' if '?' in base else '?'}{urllib.parse.urlencode(query)}"


async def connect(base: str, dialect: str, name: str, stats: Stats | None, timeout: float,
                  auth: Auth | None = None, packer: str = "edn", ssl: SSLContext | None = None) -> Client:
    """One client, connected and past its protocol handshake."""
    url = client_url(base, dialect, name, auth)
    headers = [("Cookie", auth.cookie)] if auth and auth.cookie else None
    pong = ws_pong(packer) if dialect.startswith("sente") else (TEXT, b"")
    gzipped = packer.endswith("+gzip")
    _tr, client = await asyncio.wait_for(
        picows.ws_connect(lambda: Client(dialect, stats, pong, gzipped), url, websocket_handshake_timeout=timeout,
                          extra_headers=headers, ssl_context=ssl), timeout)
    assert isinstance(client, Client)
    await asyncio.wait_for(client.ready, timeout)
    return client


# ---------------------------------------------------------------------- a worker process


class Worker:
    """One process's clients and its side of the coordinator's pipe."""

    def __init__(self, spec: dict[str, Any], conn: Connection) -> None:
        self.spec = spec
        self.conn = conn
        self.stats = Stats()
        self.clients: list[Client] = []

    async def run(self) -> None:
        spec = self.spec
        deadline = spec["deadline"]  # time.monotonic() value; the process gives up past it
        sem = asyncio.Semaphore(spec["concurrency"])
        errors: list[str] = []

        async def one(i: int) -> None:
            async with sem:
                try:
                    self.clients.append(await connect(
                        spec["url"], spec["dialect"], f"w{spec['index']}c{i}", self.stats, spec["timeout"],
                        spec.get("auth"), spec.get("packer", "edn"), insecure_context(spec.get("insecure"))))
                except Exception as e:
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}")
                    errors_count[0] += 1

        errors_count = [0]
        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(spec["count"])))
        t1 = time.monotonic()
        self.conn.send(("connected", len(self.clients), errors_count[0], t0, t1, errors))
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_reader(self.conn.fileno(), self._on_command, stop)
        try:
            while not stop.done() and time.monotonic() < deadline:
                self.conn.send(("progress", self.stats.phase, self.stats.received, self.stats.last_ns))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stop), 0.1)
        finally:
            loop.remove_reader(self.conn.fileno())
            for client in self.clients:
                if client.transport is not None and not client.gone:
                    client.transport.send_close(picows.WSCloseCode.OK)  # picows's default, 1005, must not be sent
                    client.transport.disconnect()
            await asyncio.sleep(0.2)

    def _on_command(self, stop: asyncio.Future[None]) -> None:
        while self.conn.poll():
            try:
                command = self.conn.recv()
            except EOFError:
                if not stop.done():
                    stop.set_result(None)
                return
            if command[0] == "phase":
                self.stats.start_phase(command[1])
            elif command[0] == "report":
                self.conn.send(("report", self.report(command[1])))
            elif command[0] == "stop" and not stop.done():
                stop.set_result(None)

    def report(self, expected: int) -> dict[str, Any]:
        s = self.stats
        counts = [c.count if c.phase == s.phase else 0 for c in self.clients]
        return {
            "received": s.received,
            "frames": s.frames,
            "first_ns": s.first_ns,
            "last_ns": s.last_ns,
            "hist": s.hist,
            "lost": sum(max(0, expected - c) for c in counts),
            "duplicates": sum(max(0, c - expected) for c in counts),
            "clients": len(self.clients),
            "closed": s.closed,
        }


def worker_main(spec: dict[str, Any], conn: Connection) -> None:
    """Entry point of a load-generator process (multiprocessing, spawn)."""
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    raise_nofile()
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(Worker(spec, conn).run())
    except ImportError:
        asyncio.run(Worker(spec, conn).run())
    finally:
        conn.close()
