"""The checkout as a developer and a user's type checker meet it: an editable install mypy can follow, and a
suite that still collects in a clone without ../shared beside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sente

REPO = Path(__file__).resolve().parents[2]

USER_APP = """
from sente.app import SenteApp
from sente.edn import Keyword
from sente.server import ChannelSocketServer


def app(packer: str = "edn") -> SenteApp:
    chsk = ChannelSocketServer(packer=packer)
    delivered: bool = chsk.send("alice", [Keyword("app/hello"), {"n": 1}])
    del delivered
    return SenteApp(chsk, chsk.asgi())
"""


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "user_app.py").write_text(source)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user_app.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_an_editable_install_is_visible_to_mypy(tmp_path: Path) -> None:
    if not Path(sente.__file__).is_relative_to(REPO):
        pytest.skip("sente is not installed from this checkout (pip install -e .)")
    good = mypy(tmp_path, USER_APP)
    assert good.returncode == 0, good.stdout
    bad = mypy(tmp_path, USER_APP.replace("delivered: bool", "delivered: str"))
    assert bad.returncode == 1 and 'has type "bool"' in bad.stdout, bad.stdout  # sente's own annotations were read


def test_the_suite_collects_without_the_shared_vectors(tmp_path: Path) -> None:
    clone = tmp_path / "clone"  # ../shared of this copy does not exist
    shutil.copytree(REPO / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", clone)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/csente", "tests/sente/test_packers.py", "tests/sente/conformance"],
                          cwd=clone, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "CI"})  # CI would refuse: no ../shared
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" not in done.stdout.lower().split("\n")[-2], done.stdout[-2000:]
    assert "tests collected" in done.stdout or "no tests collected" in done.stdout, done.stdout[-2000:]
