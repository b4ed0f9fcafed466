"""``registry_app`` whose factory takes 1.5 s: a restarted worker runs for a while before it listens."""

from __future__ import annotations

import time
from typing import Any

from sente.app import SenteApp
from tests.sente.cluster import registry_app


def app(packer: str = "edn", **options: Any) -> SenteApp:
    time.sleep(1.5)
    return registry_app.app(packer, **options)
