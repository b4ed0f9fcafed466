"""The package as a user gets it: an sdist built from the checkout, a wheel built from that sdist on each supported
Python, installed into a fresh virtualenv and run from a directory that is not the checkout.

Only the runtime pins (requirements/runtime.txt, which also carries the build tools) go into the venv, so a module
that imports a dev-only package, a subpackage or data file left out of the wheel, or an extension that does not
build from the .pyx sources fails here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import stop
from tests.packaging.pythons import SUPPORTED, interpreter

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300


ENV = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}, "CSENTE_OPT": "0"}
"""The children's environment: none of ours on their path; the extensions compiled unoptimised (a smoke test of
the packaging, built three times, at a fraction of the compile time)."""


def run(*argv: str | Path, cwd: Path, timeout: float = TIMEOUT) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", out, REPO, cwd=out)
    (path,) = out.glob("csente-*.tar.gz")
    return path


@pytest.fixture(scope="module", params=SUPPORTED)
def venv(request: pytest.FixtureRequest, sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv of one supported Python with the wheel built from the sdist installed: its bin/."""
    python = interpreter(request.param)
    if python is None:
        pytest.skip(f"Python {request.param} is not installed here (pyenv install {request.param})")
    home = tmp_path_factory.mktemp(f"py{request.param}")
    run(python, "-m", "venv", home / "venv", cwd=home)
    bin_ = home / "venv" / "bin"
    run(bin_ / "python", "-m", "pip", "install", "-q", "--require-hashes", "-r", REPO / "requirements" / "runtime.txt",
        cwd=home)
    run(bin_ / "python", "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", home / "dist", sdist,
        cwd=home)
    (wheel,) = (home / "dist").glob("csente-*.whl")
    run(bin_ / "python", "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=home)
    yield bin_


IMPORT_ALL = """
import importlib, pkgutil, sys
import csente, sente
names = []
for package in (csente, sente):
    names.append(package.__name__)
    found = pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    names += [m.name for m in found if not m.name.endswith(".__main__")]  # importing those runs the program
for name in names:
    module = importlib.import_module(name)
    where = getattr(module, "__file__", "") or ""
    assert sys.prefix in where, (name, where)  # the venv's copy, never the checkout's
print(len(names), "modules")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str | Path], cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if "sente: serving" in line:
            return proc
        assert time.monotonic() < deadline, "no startup line within 30 s"
    raise AssertionError(f"{argv} exited with {proc.wait()} before serving")



def test_every_module_imports_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    out = run(venv / "python", "-c", IMPORT_ALL, cwd=tmp_path)
    assert int(out.split()[0]) > 40, out


def test_the_wheel_carries_data_and_stubs(venv: Path, tmp_path: Path) -> None:
    out = run(venv / "python", "-c", "import csente, sente, pathlib; print(pathlib.Path(csente.__file__).parent); "
              "print(pathlib.Path(sente.__file__).parent)", cwd=tmp_path)
    csente_dir, sente_dir = (Path(line) for line in out.split())
    for name in ("py.typed", "edn.pyi", "transit.pyi", "transit_rules.pyi", "groups.pyi", "types.pxd", "shm.pxd",
                 "bytebuf.pxd", "transit_rules.pxd", "transit_reader.pxd", "edn_writer.pxd", "msgpack_writer.pxd"):
        assert (csente_dir / name).is_file(), name
    for name in ("py.typed", "static/sente.js", "static/demo.html", "static/LICENSES.txt", "grafana/sente.json"):
        assert (sente_dir / name).is_file(), name
    dashboard = run(venv / "python", "-c", "from sente.snapshot import DASHBOARD, load_dashboard; "
                    "print(DASHBOARD, len(load_dashboard()['panels']))", cwd=tmp_path).split()
    assert Path(dashboard[0]).is_relative_to(sente_dir) and int(dashboard[1]) >= 12, dashboard


def test_version(venv: Path, tmp_path: Path) -> None:
    assert run(venv / "sente", "--version", cwd=tmp_path).strip() == "sente (csente) 0.1.0"


def test_broker_with_two_workers_answers_the_client(venv: Path, tmp_path: Path) -> None:
    port = free_port()
    server = start([venv / "sente", "serve", "sente.testapp:app", "--workers", "2", "--port", str(port)], tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        out = run(venv / "sente", "probe", f"{base}/chsk", "--type", "ws", "--uid", "alice",
                  "--token-url", f"{base}/csrf-token", "--send", "[:test/echo {:a 1}]", cwd=tmp_path, timeout=30)
        assert "reply: {:a 1}" in out, out
    finally:
        stop(server)


def test_demo_serves_sente_js(venv: Path, tmp_path: Path) -> None:
    port = free_port()
    server = start([venv / "sente", "demo", "--workers", "1", "--port", str(port)], tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sente.js", timeout=10) as r:
            assert r.status == 200 and b"sente.js" in r.read(200)
    finally:
        stop(server)


def test_bench_quick_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """sente bench ships: --quick starts the peers an installed package has (no checkout: no picows/socketio)."""
    out = run(venv / "sente", "bench", "--quick", "-n", "20", "--duration", "0.5", "--quiet", "--out", tmp_path,
              cwd=tmp_path, timeout=120)
    for peer in ("csente", "csente-30ms", "csente-ref"):
        assert f"| {peer} | burst | 20 | 10 |" in out and f"| {peer} | rate | 20 |" in out, out
    assert "| picows |" not in out and (tmp_path / "results.jsonl").is_file()
