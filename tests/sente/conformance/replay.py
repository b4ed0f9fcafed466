"""Replay a captured Sente wire transcript (../shared/vectors/wire/*.jsonl) against our server, and compare.

The client side is scripted from the transcript's ``c2s`` records, sent in order with the recorded gaps
(``rel_ms``): raw HTTP/1.1 requests (one TCP connection each, as the recorded method, target, headers
and body), WebSocket upgrades and frames (our own minimal RFC 6455 client over a socket, masked frames,
text/binary/close), and the raw upgrade requests of ``raw_http_request`` records, byte for byte. Before
a ``c2s`` record is sent, every ``s2c`` record recorded before it must have been observed (bounded wait),
so the causal order of the capture is kept; when our server is slower the schedule shifts, keeping the
recorded gaps.

Values that are random per run are substituted on the way out and normalised back on the way in:
the CSRF token (learnt from the ``/csrf-token`` response; plain and percent-encoded), the session
cookie value (learnt from each ``Set-Cookie``), client-ids (a fresh uuid4 per recorded one, so runs
never collide), the ``Host`` header; ``Content-Length`` is recomputed. WebSocket keys are reused, so
``Sec-WebSocket-Accept`` must match exactly. cb-ids are chosen by the client and kept.

Compared for every ``s2c`` record, per simulated client (``conn``), in order: the kind of event
(HTTP response to the same request, upgrade response, frame, close), HTTP status, body bytes,
``Content-Type``, ``Set-Cookie`` (presence and attributes; the value is per run), the 101's
``Upgrade``/``Connection`` (tokens, compared case-insensitively: http-kit writes ``Upgrade``, picows
``upgrade``) and ``Sec-WebSocket-Accept`` (exact), frame opcode and exact payload bytes, close codes;
nothing else may arrive. For raw responses the status line, those headers and the bytes after the
headers (body, or the first WebSocket frame after a 101) are compared.

Not compared (http-kit and ring-defaults artefacts, or transport details): ``Server``, ``Date``,
``X-XSS-Protection``, ``X-Frame-Options``, ``X-Content-Type-Options``, ``Content-Length`` (the body is
compared instead), ``Connection``/``Transfer-Encoding`` outside a 101 (http-kit keeps connections
alive, our refused upgrades close), header name case and order; the server's echo of a close the
client started (the capture did not record it).

Timing: each ``s2c`` record's delay after the last ``c2s`` record before it must match the recorded
delay within ``250 ms + 10 %`` (a 30/100 ms batch window, a ping at 12.5 s, a timeout at 20 s). Raw
responses are checked against an upper bound only: the capture client read them with a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.vectors import VECTORS

WIRE = VECTORS / "wire"
TOLERANCE_MS = 250.0
TOLERANCE_FRACTION = 0.10
WAIT_SLACK_MS = 3_000.0  # how much longer than recorded a prerequisite may take before we go on
END_GRACE_MS = 300.0  # how long to listen for extra events after the last record
COMPARED_HEADERS = ("content-type", "set-cookie")
UPGRADE_HEADERS = ("upgrade", "connection", "sec-websocket-accept")


def scenario_names() -> list[str]:
    return sorted(p.stem for p in WIRE.glob("*.jsonl"))


def load(name: str) -> list[dict[str, Any]]:
    with open(WIRE / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tolerance(expected_ms: float) -> float:
    return TOLERANCE_MS + TOLERANCE_FRACTION * expected_ms


# ---------------------------------------------------------------------------------------- server


class ServerThread:
    """Our server (uvicorn + the picows bridge, via sente.serve) on 127.0.0.1, in a thread with its own loop."""

    def __init__(self, app_factory: Callable[[], Any], port: int = 0, *, ws: bool = True) -> None:
        """``port``: a fixed one (to restart on the same port); ``ws=False``: no WebSocket support at all."""
        from sente import serve

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        import uvicorn

        config = serve.uvicorn_config(app_factory(), "127.0.0.1", self.port, log_level="warning")
        if not ws:
            config.ws = "none"  # upgrades are answered as plain HTTP: WebSocket blocked, as by a proxy
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name=f"sente-server-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            try:
                import uvloop

                loop = uvloop.new_event_loop()
            except ImportError:  # pragma: no cover
                loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                loop.run_until_complete(self.server.serve(sockets=[self.sock]))
            finally:
                pending = asyncio.all_tasks(loop)  # held polls, writers: end them before the loop goes
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()
        except BaseException as e:
            self.error = e

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"server did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class AppThread(ServerThread):
    """ServerThread for an app object, on asyncio's own loop (not uvloop), as the client and browser tests use it."""

    def __init__(self, app: Any, port: int = 0, *, ws: bool = True) -> None:
        super().__init__(lambda: app, port, ws=ws)

    def _run(self) -> None:
        # asyncio.run's way: tasks still pending when the server stops (the app's router) are cancelled and
        # awaited before the loop closes, so no coroutine is finalised later by the GC in another thread.
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.sock]))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except BaseException as e:
            self.error = e
        finally:
            loop.close()


# ---------------------------------------------------------------------------------------- observations


@dataclass
class Observed:
    """Something our server sent."""

    conn: str
    kind: str  # http_response, ws_upgrade_response, raw_http_response, ws_frame, ws_close
    at_ms: float
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    frame: str | None = None  # text, binary, close
    close_code: int | None = None
    in_reply_to: int | None = None


@dataclass
class Result:
    name: str
    problems: list[str]
    notes: list[str]
    wall_s: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        lines = [f"{self.name}: {'PASS' if self.ok else 'FAIL'} ({self.wall_s:.1f} s)"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class Difference:
    """A named, justified place where our server deliberately answers differently from the capture.

    ``expect`` replaces fields of the recorded ``s2c`` record (``raw``, ``status``, ``headers``...)
    for the comparison; ``absent`` says our server sends nothing there (the record is not expected).
    """

    name: str
    why: str
    expect: dict[str, Any] = field(default_factory=dict)
    absent: bool = False


# ---------------------------------------------------------------------------------------- HTTP / WS I/O


def parse_head(head: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    _version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    headers = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
    return lines[0], int(code), reason, headers


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def read_http_response(reader: asyncio.StreamReader) -> tuple[bytes, int, str, list[tuple[str, str]], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    _, status, reason, headers = parse_head(head[:-4])
    length = header(headers, "content-length")
    if status == 101:
        body = b""
    elif length is not None:
        body = await reader.readexactly(int(length))
    elif (header(headers, "transfer-encoding") or "").lower() == "chunked":
        chunks = []
        for _ in range(100_000):
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(data[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.read()
    return head, status, reason, headers, body


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, int, bytes]:
    """One server frame: (raw bytes, opcode, payload). Server frames must be unmasked."""
    first = await reader.readexactly(2)
    n = first[1] & 0x7F
    ext = b""
    if n == 126:
        ext = await reader.readexactly(2)
        n = struct.unpack("!H", ext)[0]
    elif n == 127:
        ext = await reader.readexactly(8)
        n = struct.unpack("!Q", ext)[0]
    if first[1] & 0x80:
        raise AssertionError("the server sent a masked frame")
    payload = await reader.readexactly(n)
    return first + ext + payload, first[0] & 0x0F, payload


def client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# ---------------------------------------------------------------------------------------- the replay


class Replay:
    """One scenario against one server."""

    def __init__(self, name: str, port: int, differences: dict[int, Difference] | None = None) -> None:
        self.name = name
        self.port = port
        self.records = load(name)
        self.differences = differences or {}
        absent = {seq for seq, d in self.differences.items() if d.absent}
        self.expected = [r for r in self.records if r["dir"] == "s2c" and r["seq"] not in absent]
        self.by_seq = {r["seq"]: r for r in self.records}
        self.out: dict[str, str] = {}  # recorded -> ours, applied to what we send
        self.back: dict[str, str] = {}  # ours -> recorded, applied to what we receive
        self.observed: list[Observed] = []
        self.sent_at: dict[int, float] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.ws: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self.ws_closing: set[str] = set()
        self.tasks: list[asyncio.Task[Any]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.changed = asyncio.Event()
        self.t0 = 0.0
        for r in self.records:  # client-ids: a fresh one per recorded one
            for k, v in (r.get("query") or []) + (r.get("form") or []):
                if k == "client-id" and v not in self.out:
                    self.map(v, str(uuid.uuid4()))

    # -------------------------------------------------------------- substitution

    def map(self, recorded: str, ours: str) -> None:
        if recorded and ours and recorded != ours:
            for a, b in ((recorded, ours), (quote(recorded, safe=""), quote(ours, safe=""))):
                self.out[a] = b
                self.back.setdefault(b, a)

    def sub(self, text: str, table: dict[str, str]) -> str:
        for a in sorted(table, key=len, reverse=True):
            text = text.replace(a, table[a])
        return text

    def normalise(self, data: bytes) -> bytes:
        """What our server sent, with this run's token, cookie and client-ids mapped back to the recorded ones."""
        return self.sub(data.decode("utf-8", "surrogateescape"), self.back).encode("utf-8", "surrogateescape")

    def now(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def observe(self, obs: Observed) -> None:
        self.observed.append(obs)
        self.changed.set()

    def response_record(self, request_seq: int | None) -> dict[str, Any] | None:
        """The recorded response to a request: by ``in_reply_to``, else the next s2c record of its conn."""
        if request_seq is None:
            return None
        for r in self.records:
            if r["dir"] == "s2c" and r.get("in_reply_to") == request_seq:
                return r
        conn = self.by_seq[request_seq]["conn"]
        later = (r for r in self.records if r["seq"] > request_seq and r["dir"] == "s2c" and r["conn"] == conn)
        return next(later, None)

    def learn(self, obs: Observed) -> None:
        """Pair a response with its record to learn the per-run token and cookie."""
        rec = self.response_record(obs.in_reply_to)
        if rec is None:
            return
        req = self.by_seq[obs.in_reply_to] if obs.in_reply_to is not None else {}
        if req.get("path") == "/csrf-token" and obs.status == 200:
            self.map(rec["raw"], obs.body.decode())
        rec_headers = rec.get("headers") or []
        if rec["kind"] == "raw_http_response":
            rec_headers = parse_head(base64.b64decode(rec["raw_b64"]).split(b"\r\n\r\n")[0])[3]
        recorded_cookie, our_cookie = header(rec_headers, "set-cookie"), header(obs.headers, "set-cookie")
        if recorded_cookie and our_cookie:
            self.map(_cookie_value(recorded_cookie), _cookie_value(our_cookie))

    # -------------------------------------------------------------- running

    async def run(self) -> Result:
        started = time.monotonic()
        self.t0 = time.monotonic()
        offset = 0.0
        try:
            for rec in self.records:
                if rec["dir"] != "c2s":
                    continue
                await self.wait_for_prior(rec)
                late = self.now() - (rec["rel_ms"] + offset)
                if late > 0:
                    offset += late
                else:
                    await asyncio.sleep(-late / 1000.0)
                await self.send(rec)
            await self.wait_for_prior(None)
            await asyncio.sleep(END_GRACE_MS / 1000.0)
        except Exception as e:
            self.problems.append(f"replay stopped: {e!r}")
        finally:
            await self.cleanup()
        self.compare()
        return Result(self.name, self.problems, self.notes, time.monotonic() - started)

    async def wait_for_prior(self, rec: dict[str, Any] | None) -> None:
        """Wait (bounded) until every expected s2c record before ``rec`` has a counterpart."""
        limit = rec["seq"] if rec is not None else 1 << 30
        wanted = [r for r in self.expected if r["seq"] < limit]
        if not wanted:
            return
        sent = [self.by_seq[s]["rel_ms"] for s in self.sent_at]
        gap = max(0.0, max(r["rel_ms"] for r in wanted) - max(sent, default=0))
        deadline = time.monotonic() + (gap + tolerance(gap) + WAIT_SLACK_MS) / 1000.0
        while len(self.observed) < len(wanted) and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))

    async def send(self, rec: dict[str, Any]) -> None:
        self.sent_at[rec["seq"]] = self.now()
        kind = rec["kind"]
        if kind == "http_request":
            self.spawn(self.http(rec))
        elif kind == "raw_http_request":
            self.spawn(self.raw_http(rec))
        elif kind == "ws_upgrade_request":
            await self.ws_upgrade(rec)
        elif kind == "ws_frame":
            _, writer = self.ws[rec["conn"]]
            payload = base64.b64decode(rec["raw_b64"]) if "raw_b64" in rec else rec["raw"].encode("utf-8")
            writer.write(client_frame(0x2 if rec["frame"] == "binary" else 0x1, payload))
        elif kind == "ws_close":
            _, writer = self.ws[rec["conn"]]
            self.ws_closing.add(rec["conn"])
            code = rec.get("close_code")
            writer.write(client_frame(0x8, struct.pack("!H", code) if code is not None else b""))
        else:
            raise AssertionError(f"unknown c2s kind {kind}")

    def spawn(self, coro: Any) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    def request_bytes(self, rec: dict[str, Any]) -> bytes:
        line = self.sub(rec["request_line"], self.out)
        body = rec["raw"].encode("utf-8") if rec.get("method") == "POST" else b""
        if rec.get("body_binary") and "raw_b64" in rec:
            body = base64.b64decode(rec["raw_b64"])
        elif body:
            body = self.sub(rec["raw"], self.out).encode("utf-8")
        lines = [line]
        for k, v in rec["headers"]:
            if k.lower() == "host":
                v = f"127.0.0.1:{self.port}"
            elif k.lower() == "content-length":
                v = str(len(body))
            else:
                v = self.sub(v, self.out)
            lines.append(f"{k}: {v}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body

    async def http(self, rec: dict[str, Any]) -> None:
        reader, writer = await self.connect()
        writer.write(self.request_bytes(rec))
        try:
            _, status, reason, headers, body = await asyncio.wait_for(read_http_response(reader), 60)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return  # no response: the comparison reports it
        obs = Observed(rec["conn"], "http_response", self.now(), status, reason, headers, body, in_reply_to=rec["seq"])
        self.learn(obs)
        self.observe(obs)
        writer.close()

    async def raw_http(self, rec: dict[str, Any]) -> None:
        reader, writer = await self.connect()
        raw = base64.b64decode(rec["raw_b64"]).decode("latin-1")
        raw = raw.replace("Host: 127.0.0.1:18090", f"Host: 127.0.0.1:{self.port}")
        writer.write(self.sub(raw, self.out).encode("latin-1"))
        try:
            head, status, reason, headers, body = await asyncio.wait_for(read_http_response(reader), 10)
            if status == 101:
                body = (await asyncio.wait_for(read_frame(reader), 5))[0]
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        obs = Observed(rec["conn"], "raw_http_response", self.now(), status, reason, headers, body,
                       in_reply_to=rec["seq"])
        obs.frame = head.split(b"\r\n", 1)[0].decode("latin-1")  # the status line, compared as is
        self.learn(obs)
        self.observe(obs)
        if status == 101:
            writer.write(client_frame(0x8, struct.pack("!H", 1000)))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(), 2)
        writer.close()

    async def ws_upgrade(self, rec: dict[str, Any]) -> None:
        reader, writer = await self.connect()
        writer.write(self.request_bytes(rec))
        try:
            _, status, reason, headers, body = await asyncio.wait_for(read_http_response(reader), 10)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
            self.problems.append(f"seq {rec['seq']}: upgrade failed: {e!r}")
            return
        self.observe(Observed(rec["conn"], "ws_upgrade_response", self.now(), status, reason, headers, body,
                              in_reply_to=rec["seq"]))
        if status == 101:
            self.ws[rec["conn"]] = (reader, writer)
            self.spawn(self.ws_reader(rec["conn"], reader, writer))

    async def ws_reader(self, conn: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for _ in range(100_000):
                _, opcode, payload = await read_frame(reader)
                if opcode == 0x8:
                    if conn in self.ws_closing:
                        continue  # the echo of our close: not recorded
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.observe(Observed(conn, "ws_close", self.now(), frame="close", close_code=code))
                elif opcode in (0x9, 0xA):
                    continue  # protocol-level ping/pong: not part of Sente's protocol
                else:
                    kind = "text" if opcode == 0x1 else "binary" if opcode == 0x2 else f"opcode-{opcode}"
                    self.observe(Observed(conn, "ws_frame", self.now(), body=payload, frame=kind))

    async def cleanup(self) -> None:
        for writer in self.writers:
            writer.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        for writer in self.writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    # -------------------------------------------------------------- comparison

    def compare(self) -> None:
        conns = sorted({r["conn"] for r in self.records})
        for conn in conns:
            want = [r for r in self.expected if r["conn"] == conn]
            got = sorted((o for o in self.observed if o.conn == conn), key=lambda o: o.at_ms)
            for i, rec in enumerate(want):
                if i >= len(got):
                    where = f"seq {rec['seq']} ({conn} {rec['kind']})"
                    self.problems.append(f"{where}: nothing arrived; wanted {_show(rec)}")
                    continue
                self.compare_one(rec, got[i])
            for extra in got[len(want):]:
                self.problems.append(f"{conn}: unexpected {extra.kind} {extra.frame or extra.status} "
                                     f"{extra.body[:200]!r} at {extra.at_ms:.0f} ms")

    def compare_one(self, rec: dict[str, Any], obs: Observed) -> None:
        diff = self.differences.get(rec["seq"])
        if diff is not None:
            rec = {**rec, **diff.expect}
            self.notes.append(f"seq {rec['seq']}: named difference {diff.name!r}")
        where = f"seq {rec['seq']} ({rec['conn']} {rec['kind']})"
        kind = rec["kind"]
        if obs.kind != kind:
            self.problems.append(f"{where}: got {obs.kind} {obs.frame or obs.status} {obs.body[:200]!r} instead")
            return
        if kind in ("http_response", "ws_upgrade_response", "raw_http_response"):
            paired = self.response_record(obs.in_reply_to)
            if paired is None or paired["seq"] != rec["seq"]:
                self.problems.append(f"{where}: out of order: got the response to seq {obs.in_reply_to} first")
                return
            self.compare_http(where, rec, obs)
        elif kind == "ws_frame":
            want = rec["raw"].encode("utf-8") if "raw_b64" not in rec else base64.b64decode(rec["raw_b64"])
            got = self.normalise(obs.body)
            if obs.frame != rec["frame"] or got != want:
                self.problems.append(f"{where}: frame {obs.frame} {got!r}, wanted {rec['frame']} {want!r}")
        elif kind == "ws_close" and obs.close_code != rec.get("close_code"):
            self.problems.append(f"{where}: close code {obs.close_code}, wanted {rec.get('close_code')}")
        self.compare_time(where, rec, obs)

    def compare_http(self, where: str, rec: dict[str, Any], obs: Observed) -> None:
        if rec["kind"] == "raw_http_response":
            raw = base64.b64decode(rec["raw_b64"])
            head, _, want_body = raw.partition(b"\r\n\r\n")
            status_line, status, _, want_headers = parse_head(head)
            if obs.frame != status_line:
                self.problems.append(f"{where}: status line {obs.frame!r}, wanted {status_line!r}")
        else:
            status, want_headers = rec["status"], rec.get("headers") or []
            want_body = rec["raw"].encode("utf-8")
        if obs.status != status:
            self.problems.append(f"{where}: status {obs.status}, wanted {status}")
        got_body = self.normalise(obs.body)
        if got_body != want_body:
            self.problems.append(f"{where}: body {got_body!r}, wanted {want_body!r}")
        names = COMPARED_HEADERS + (UPGRADE_HEADERS if status == 101 else ())
        for name in names:
            want, got = header(want_headers, name), header(obs.headers, name)
            if name == "set-cookie":
                want = _cookie_shape(want, {})
                got = _cookie_shape(got, self.back)
            elif name in ("upgrade", "connection") and want is not None and got is not None:
                want, got = want.lower(), got.lower()  # tokens, case-insensitive (RFC 9110 §7.6.1, §7.8)
            if want != got:
                self.problems.append(f"{where}: header {name}: {got!r}, wanted {want!r}")

    def compare_time(self, where: str, rec: dict[str, Any], obs: Observed) -> None:
        anchor = next((r for r in reversed(self.records[: self.records.index(self.by_seq[rec["seq"]])])
                       if r["dir"] == "c2s"), None)
        if anchor is None or anchor["seq"] not in self.sent_at:
            return
        want = rec["rel_ms"] - anchor["rel_ms"]
        got = obs.at_ms - self.sent_at[anchor["seq"]]
        tol = tolerance(want)
        if rec["kind"] == "raw_http_response":
            if got > want + tol:
                self.problems.append(f"{where}: arrived {got:.0f} ms after seq {anchor['seq']}, recorded {want} ms")
        elif abs(got - want) > tol:
            self.problems.append(f"{where}: arrived {got:.0f} ms after seq {anchor['seq']}, recorded {want} ms "
                                 f"(tolerance {tol:.0f} ms)")


def _cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].partition("=")[2]


def _cookie_shape(set_cookie: str | None, back: dict[str, str]) -> str | None:
    """A Set-Cookie header as name=value plus its attributes, spacing normalised, value mapped back."""
    if set_cookie is None:
        return None
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _, value = parts[0].partition("=")
    return ";".join([f"{name}={back.get(value, value)}", *parts[1:]])


def _show(rec: dict[str, Any]) -> str:
    return f"{rec.get('status', rec.get('frame', ''))} {rec['raw'][:200]!r}"


async def run_scenarios(names: list[str], port: int, differences: dict[str, dict[int, Difference]],
                        concurrent: bool) -> dict[str, Result]:
    """Run scenarios against the server on ``port``, one after the other or all at once."""
    if concurrent:
        results = await asyncio.gather(*(Replay(n, port, differences.get(n)).run() for n in names))
        return {r.name: r for r in results}
    out = {}
    for name in names:
        out[name] = await Replay(name, port, differences.get(name)).run()
    return out


def path_of(name: str) -> Path:
    return WIRE / f"{name}.jsonl"
