"""EDN writing: Clojure ``pr-str`` output (see edn_writer.pyx); the public face is csente.edn."""

from collections.abc import Callable, Mapping
from typing import Any

STRING_ESCAPES: tuple[bytes, bytes]

def dumps(
    value: Any,
    *,
    writers: Mapping[type[Any], Callable[[Any], tuple[str, Any]]] | None = None,
    namespace_maps: bool = False,
    wire: bool = False,
) -> str: ...
