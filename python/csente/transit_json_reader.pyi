"""Transit-json and json-verbose reading (see transit_json_reader.pyx); the public face is csente.transit."""

from collections.abc import Callable, Mapping
from typing import Any

def loads(
    data: str | bytes,
    *,
    handlers: Mapping[str, Callable[[Any], Any]] | None = None,
    max_depth: int = 256,
    max_size: int = 64 * 1024 * 1024,
) -> Any: ...
