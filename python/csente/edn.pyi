"""EDN codec: Clojure ``pr-str`` output and tools.reader 1.3.6 input (see edn.pyx)."""

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
def dumps(
    value: Any,
    *,
    writers: Mapping[type[Any], Callable[[Any], tuple[str, Any]]] | None = None,
    namespace_maps: bool = False,
    wire: bool = False,
) -> str: ...
