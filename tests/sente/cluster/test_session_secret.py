"""Sessions survive a restart of ``sente serve``: the signing secret lives in a file created once (with a loud
warning), ``--session-secret-file`` names it, a bad one stops the start with a clear message; ``--secure-cookies``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.sente.cluster.test_supervisor import REPO, Conn, cluster, get_once
from tests.sente.conformance.replay import header
from tests.sente.test_serve import sente_serve

APP = "sente.testapp:app"  # CSRF checked against the session's token: a session the server cannot read is a 403
GENERATED = "generated a new session secret"


async def log_in(port: int, uid: str) -> tuple[str, str, str]:
    """A session for ``uid``: (cookie, CSRF token, the whole Set-Cookie)."""
    status, headers, token = await get_once(port, f"/csrf-token?uid={uid}")
    set_cookie = header(headers, "set-cookie")
    assert status == 200 and set_cookie is not None
    return set_cookie.split(";", 1)[0], token.decode(), set_cookie


async def upgrade_status(port: int, uid: str, cookie: str, token: str) -> int:
    conn = await Conn.open(port)
    try:
        conn.send_request(f"/chsk?{urlencode({'client-id': f'tab-{uid}', 'csrf-token': token})}",
                          {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Cookie": cookie})
        status, _, _ = await conn.response()
        return status
    finally:
        conn.close()


async def log_in_all(port: int, n: int) -> list[tuple[str, str, str]]:
    return [await log_in(port, f"u{i}") for i in range(n)]


async def upgrade_all(port: int, sessions: list[tuple[str, str, str]]) -> list[int]:
    return [await upgrade_status(port, f"u{i}", cookie, token) for i, (cookie, token, _) in enumerate(sessions)]


@contextlib.contextmanager
def serving(workers: int) -> Iterator[tuple[int, Callable[[], str]]]:
    """``sente serve APP`` with ``workers``: (port, a function returning its log so far; "" for --workers 0)."""
    if workers:
        with cluster(APP, "--log-level", "warning") as c:
            yield c.port, c.log
    else:
        with sente_serve(APP, "--workers", "0") as (_, port, _):
            yield port, lambda: ""


@pytest.mark.parametrize("workers", [0, 2])
def test_sessions_survive_a_restart_with_the_secret_created_once(
        workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("SENTE_SESSION_SECRET", raising=False)
    secret_file = tmp_path / "sente" / "session-secret"
    with serving(workers) as (port, log):
        sessions = asyncio.run(log_in_all(port, 10))
        assert asyncio.run(upgrade_all(port, sessions)) == [101] * 10
        if workers:
            assert GENERATED in log() and str(secret_file) in log(), log()
    assert secret_file.exists() and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
    content = secret_file.read_text()
    with serving(workers) as (port, log):  # restarted: every client's cookie still holds
        assert asyncio.run(upgrade_all(port, sessions)) == [101] * 10
        assert GENERATED not in log()
    assert secret_file.read_text() == content


def test_session_secret_file_names_the_file_and_a_bad_one_stops_the_start(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTE_SESSION_SECRET", raising=False)
    named = tmp_path / "deep" / "secret"
    with sente_serve(APP, "--workers", "0", "--session-secret-file", str(named)) as (_, port, _):
        cookie, token, _ = asyncio.run(log_in(port, "alice"))
    assert named.exists()
    with sente_serve(APP, "--workers", "0") as (_, port, _):  # another secret: the old cookie is no session
        assert asyncio.run(upgrade_status(port, "alice", cookie, token)) == 403
    short = tmp_path / "short"
    short.write_text("too short\n")
    done = subprocess.run([sys.executable, "-m", "sente", "serve", APP, "--workers", "0", "--port", "0",
                           "--session-secret-file", str(short)], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "at least 16 characters" in done.stderr, done.stderr
    env = {**os.environ, "SENTE_SESSION_SECRET_FILE": str(short)}
    done = subprocess.run([sys.executable, "-m", "sente", "serve", APP, "--workers", "0", "--port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2 and "SENTE_SESSION_SECRET_FILE" in done.stderr, done.stderr


@pytest.mark.parametrize(("flags", "secure"), [((), False), (("--secure-cookies",), True),
                                               (("--no-secure-cookies",), False)])
def test_secure_cookies_marks_the_session_cookie_secure(flags: tuple[str, ...], secure: bool) -> None:
    with sente_serve(APP, "--workers", "0", *flags) as (_, port, _):
        _, _, set_cookie = asyncio.run(log_in(port, "alice"))
    assert ("; Secure" in set_cookie) == secure, set_cookie
    assert "HttpOnly" in set_cookie
