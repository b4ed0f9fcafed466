"""The ``sente`` command as a user meets it on day one: its help, its version, and one clear line (exit 2) for
every mistake, instead of a traceback."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from sente import cli
from sente.cli import main, roundtrip


def sente(*argv: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sente", *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def test_roundtrip_prints_every_message_in_each_packer_and_succeeds() -> None:
    out = io.StringIO()
    assert roundtrip(out) == 0
    text = out.getvalue()
    assert "BAD" not in text
    assert '[[:chsk/handshake ["alice" nil {:hsdata "x"}]] nil]' in text
    assert '[["~:chsk/handshake",["alice",null,["^ ","~:hsdata","x"]]],null]' in text
    assert "[[[:test/pushed {:a 1}] [:test/pushed {:a 2}]] nil]" in text
    assert "push batch msgpack     92 92 92 c7 0b 00 74 65 73 74 2f" in text


def test_python_dash_m_sente_runs_the_cli() -> None:
    result = sente()
    assert result.returncode == 0, result.stderr
    assert "handshake" in result.stdout


def test_version() -> None:
    result = sente("--version")
    assert result.returncode == 0 and result.stdout.strip() == "sente (csente) 0.1.0"


def parsers(monkeypatch: pytest.MonkeyPatch) -> dict[str, argparse.ArgumentParser]:
    """Every parser the CLI builds: the top level and each command's."""
    seen: dict[str, argparse.ArgumentParser] = {}

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> object:
        seen[self.prog] = self
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(SystemExit):
        main([])
    top = seen["sente"]
    (sub,) = (a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"sente": top, **{f"sente {name}": p for name, p in sub.choices.items()}}


def test_every_flag_has_help_without_sphinx_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    for prog, parser in parsers(monkeypatch).items():
        text = parser.format_help()
        for markup in ("``", ":mod:", ":class:", ":func:", ":meth:"):
            assert markup not in text, (prog, markup)
        for action in parser._actions:
            assert action.help, (prog, action.option_strings or action.dest)


def test_option_flags_show_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    serve = parsers(monkeypatch)["sente serve"]
    helps = {a.option_strings[0]: a.help for a in serve._actions if a.option_strings}
    assert helps["--lp-timeout-ms"] == "server option lp_timeout_ms (ms) (default: 20000)"
    assert "(default: 127.0.0.1)" in str(helps["--host"]) and "(default: 8090)" in str(helps["--port"])


def test_bench_help_is_the_benchmarks() -> None:
    result = sente("bench", "--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "--url" in result.stdout
    assert "``" not in result.stdout and ":mod:" not in result.stdout


def test_an_app_that_is_not_a_factory_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "asgi_only.py").write_text(
        "class FastAPI:\n    async def __call__(self, scope, receive, send): ...\n\napp = FastAPI()\n")
    result = sente("serve", "asgi_only:app", "--workers", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "is a FastAPI object, not a factory" in result.stderr and "SenteApp" in result.stderr


def test_a_supervisor_of_one_says_one_worker(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sente", "serve", "sente.testapp:app", "--workers", "1",
                             "--port", "0", "--log-level", "warning"], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "sente: serving" in line and "1 worker," in line, line
    finally:
        proc.terminate()
        proc.wait(15)


def test_publish_to_an_unreachable_redis_is_one_clear_line() -> None:
    result = sente("publish", "--redis-url", "redis://127.0.0.1:1/0", "--broadcast", "[:app/notice 1]")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("sente publish: cannot reach Redis at redis://127.0.0.1:1/0")


def test_probe_checks_its_edn_before_connecting() -> None:
    result = sente("probe", "http://127.0.0.1:1/chsk", "--send", "[:test/echo {:a")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("sente probe: --send is not readable EDN")


def test_snapshot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["dashboard-snapshot"]) == 2
    assert "pip install 'csente[snapshot]'" in capsys.readouterr().err


def test_snapshot_of_an_unreachable_prometheus_is_one_clear_line(tmp_path: Path) -> None:
    result = sente("dashboard-snapshot", "--prometheus", "http://127.0.0.1:1", "--out", str(tmp_path / "d.png"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("sente dashboard-snapshot: cannot query Prometheus at http://127.0.0.1:1")


def test_plural() -> None:
    assert cli.plural(1, "worker") == "1 worker" and cli.plural(2, "worker") == "2 workers"
