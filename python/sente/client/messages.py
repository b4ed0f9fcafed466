"""What the client hands the application: :class:`ClientEventMsg` (an event) and :class:`WireRecord` (a trace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from csente.types import Keyword

from .ajax import encode_pairs


@dataclass(frozen=True, slots=True)
class ClientEventMsg:
    """A message for the application: ``.event`` is ``[id, data]``; ``.id`` a Keyword."""

    event: list[Any]

    @property
    def id(self) -> Keyword:
        return self.event[0]  # type: ignore[no-any-return]

    @property
    def data(self) -> Any:
        return self.event[1] if len(self.event) > 1 else None


@dataclass(frozen=True, slots=True)
class WireRecord:
    """One thing on the wire, as in ../shared/vectors/wire: ``dir`` c2s/s2c, ``transport`` ws/ajax, ``kind``..."""

    dir: str
    transport: str
    kind: str  # ws_upgrade_request, ws_frame, ws_close, ws_error, http_request, http_response, http_error
    raw: str | bytes = ""
    method: str | None = None
    path: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    status: int | None = None
    close_code: int | None = None
    rel_ms: float = 0.0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """A one-line human rendering (``sente probe`` prints these)."""
        arrow = ">>" if self.dir == "c2s" else "<<"
        head = f"{self.rel_ms:8.1f} ms {arrow} {self.transport:4} "
        raw = self.raw if isinstance(self.raw, str) else f"<{len(self.raw)} bytes> {self.raw[:64].hex()}"
        if self.kind == "http_request":
            q = ("?" + encode_pairs(self.query)) if self.query else ""
            form = "" if self.form is None else "  " + encode_pairs(self.form)
            return f"{head}{self.method} {self.path}{q}{form if self.form is not None else ''}"
        if self.kind == "ws_upgrade_request":
            return f"{head}GET {self.path}?{encode_pairs(self.query)} (upgrade)"
        if self.kind == "http_response":
            return f"{head}HTTP {self.status} {raw}"
        if self.kind == "ws_close":
            return f"{head}close {self.close_code} {raw}"
        if self.kind in ("ws_error", "http_error"):
            return f"{head}error {raw}"
        return f"{head}{raw}"
