"""``sente probe`` in a subprocess against our server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import Server


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.stop()


@pytest.mark.parametrize("type", ["ws", "ajax"])
def test_probe_prints_handshake_transcript_and_reply(server, type):
    token_url = f"http://127.0.0.1:{server.port}/csrf-token"
    out = subprocess.run(
        [sys.executable, "-m", "sente", "probe", server.url, "--uid", "alice", "--type", type,
         "--token-url", token_url, "--send", "[:test/echo {:a 1}]"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'handshake: type=' + type + ' uid="alice"' in out.stdout
    assert '[[:chsk/handshake ["alice" nil nil]] nil]' in out.stdout
    assert "reply: {:a 1}" in out.stdout
    assert ("[[:test/echo {:a 1}] :ajax]" if type == "ajax" else "[[:test/echo {:a 1}] \"") in out.stdout.replace(
        "%5B%5B%3Atest%2Fecho%20%7B%3Aa%201%7D%5D%20%3Aajax%5D", "[[:test/echo {:a 1}] :ajax]")


def test_probe_reports_a_rejection(server):
    out = subprocess.run(
        [sys.executable, "-m", "sente", "probe", server.url, "--type", "ws", "--csrf-token", "nope"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2 and "rejected: HTTP 403: Bad CSRF token" in out.stdout
