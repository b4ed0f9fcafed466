"""The supported Pythons this machine has: on PATH as pythonX.Y, or installed by pyenv."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SUPPORTED = ("3.11", "3.12", "3.13")


def interpreter(version: str) -> Path | None:
    """An interpreter of ``version`` (X.Y), or None."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True):
        return candidate
    found = shutil.which(f"python{version}")
    if found and "/shims/" not in found:  # a pyenv shim answers only for the versions pyenv has selected
        return Path(found)
    return None
