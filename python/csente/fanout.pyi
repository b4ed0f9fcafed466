from collections.abc import Sequence
from typing import Any

def write_frame(conns: Sequence[Any], frame: bytes, cap: int) -> list[Any] | None: ...
