"""EDN reading: tools.reader 1.3.6 input (see edn_reader.pyx); the public face is csente.edn."""

from collections.abc import Callable, Mapping
from typing import Any

def loads(
    data: str | bytes,
    *,
    tag_readers: Mapping[str, Callable[[Any], Any]] | None = None,
    default: Callable[[str, Any], Any] | None = None,
    max_depth: int = 256,
    max_size: int = 67108864,
) -> Any: ...
