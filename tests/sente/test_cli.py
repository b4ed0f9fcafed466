"""The ``sente`` command: until the server lands, its default shows a packer round trip."""

import io
import subprocess
import sys

from sente.cli import roundtrip


def test_roundtrip_prints_every_message_in_both_packers_and_succeeds():
    out = io.StringIO()
    assert roundtrip(out) == 0
    text = out.getvalue()
    assert "BAD" not in text
    assert '[[:chsk/handshake ["alice" nil {:hsdata "x"}]] nil]' in text
    assert '[["~:chsk/handshake",["alice",null,["^ ","~:hsdata","x"]]],null]' in text
    assert "[[[:test/pushed {:a 1}] [:test/pushed {:a 2}]] nil]" in text


def test_python_dash_m_sente_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "sente"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "handshake" in result.stdout
