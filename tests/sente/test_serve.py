"""``sente serve`` as a user runs it: a subprocess on a free 127.0.0.1 port, HTTP and WebSocket, stopped by a signal.

Every wait is bounded; the process is terminated (then killed) when a test ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from tests.sente.conformance.replay import header, read_frame, read_http_response

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
IO_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of the process's stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return proc.stdout.readline()


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def sente_serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """``python3 -m sente serve ...`` on a free port: (process, port, the first line it printed)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sente", "serve", *args, "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = read_line(proc, START_TIMEOUT)
        wait_for_port(port, proc)
        yield proc, port, first
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def http_get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, list, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        _, status, _, response_headers, body = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
        return status, response_headers, body
    finally:
        writer.close()


async def transit_handshake(port: int) -> tuple[int, bytes]:
    """Fetch a CSRF token and session, open a WebSocket with them as uid ``alice``; (status, first frame)."""
    status, headers, token = await http_get(port, "/csrf-token")
    assert status == 200 and token
    set_cookie = header(headers, "set-cookie")
    assert set_cookie is not None
    cookie = set_cookie.split(";", 1)[0]
    query = urlencode({"client-id": "tab-1", "csrf-token": token.decode(), "uid": "alice"})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /chsk?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                f"Cookie: {cookie}\r\n\r\n"
            ).encode("latin-1")
        )
        _, status, _, _, _ = await asyncio.wait_for(read_http_response(reader), IO_TIMEOUT)
        if status != 101:
            return status, b""
        _, opcode, payload = await asyncio.wait_for(read_frame(reader), IO_TIMEOUT)
        assert opcode == 0x1
        return status, payload
    finally:
        writer.close()


def test_sente_serve_prints_its_url_and_serves_csrf_tokens_and_the_transit_handshake() -> None:
    with sente_serve("sente.testapp:app", "--packer", "transit") as (proc, port, first):
        assert f"http://127.0.0.1:{port}" in first
        assert "transit" in first
        status, payload = asyncio.run(asyncio.wait_for(transit_handshake(port), 3 * IO_TIMEOUT))
        assert status == 101
        assert payload == b'[["~:chsk/handshake",["alice",null,null]],null]'
        assert proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sente_serve_stops_on_a_signal_within_a_few_seconds(sig: signal.Signals) -> None:
    with sente_serve("sente.testapp:app") as (proc, port, _first):
        status, _, _ = asyncio.run(asyncio.wait_for(http_get(port, "/csrf-token"), IO_TIMEOUT))
        assert status == 200
        sent = time.monotonic()
        proc.send_signal(sig)
        returncode = proc.wait(STOP_TIMEOUT)
        assert time.monotonic() - sent < STOP_TIMEOUT
        assert returncode in (0, -sig), returncode  # uvicorn re-raises SIGTERM after its graceful shutdown
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_such_module_xyz:app", "No module named 'no_such_module_xyz'"),
        ("sente.testapp:no_such_factory", "no attribute 'no_such_factory'"),
        ("sente.testapp", "module:factory"),
    ],
)
def test_sente_serve_with_a_bad_app_spec_exits_non_zero_with_a_clear_message(spec: str, says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sente", "serve", spec, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode != 0
    assert says in result.stderr
    assert spec in result.stderr
    assert "Traceback" not in result.stderr
