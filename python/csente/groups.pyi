"""The push path's per-flush loops over uids: recipients grouped by their batch, connections collected (groups.pyx)."""

from collections.abc import Iterable
from typing import Any

def group(
    private: dict[Any, list[tuple[int, Any]]],
    broadcasts: list[tuple[int, Any, frozenset[Any] | None]],
    by_uid: dict[Any, Any],
) -> list[tuple[list[Any], list[Any]]]: ...
def collect(by_uid: dict[Any, dict[str, Any]], uids: Iterable[Any], ws: bool) -> tuple[list[Any], list[Any]]: ...
