"""The parts of an HTTP request the protocol reads: params, headers, cookies, the session.

A WebSocket's request is kept for as long as the connection is open (event messages carry it), so the transports
may hand its headers, query and cookies over as :class:`HeadLines`, :class:`QueryPairs` and :class:`Cookies`: the
request's own text, read again on each access, instead of lists and dicts of small strings held per idle
connection (measured: ~1.5 KB of a WebSocket connection's ~12 KB RSS). They read like the lists and dict they
replace. Each remembers its last parse (one, for the whole process): a handshake reads the same request many times.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload
from urllib.parse import parse_qsl

_intern = sys.intern


class _LastParse:
    """The last ``(source, parsed)`` of one parser: the same source object again gets the same result. One tuple,
    swapped whole, so a thread reading a request (a handler in an executor) never pairs one source with another's
    result."""

    __slots__ = ("entry",)

    def __init__(self) -> None:
        self.entry: tuple[object, Any] = (None, None)


class _PairsView(Sequence[tuple[str, str]]):
    """``(name, value)`` pairs read from a request's own text (``_source``), parsed on each access; each subclass
    keeps its last parse."""

    __slots__ = ("_source",)

    _last: _LastParse

    def __init__(self, source: Any) -> None:
        self._source = source

    @staticmethod
    def _parse(source: Any) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _pairs(self) -> list[tuple[str, str]]:
        source, parsed = self._last.entry
        if source is not self._source:
            parsed = self._parse(self._source)
            self._last.entry = (self._source, parsed)
        return parsed  # type: ignore[no-any-return]

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, str] | Sequence[tuple[str, str]]:
        return self._pairs()[index]

    def __len__(self) -> int:
        return len(self._pairs())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self._pairs() == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._pairs())


class HeadLines(_PairsView):
    """An HTTP head's header lines (``name: value``, ``\\r\\n``-separated bytes) as ``(lower-case name, value)``
    pairs, in order, decoded as latin-1."""

    __slots__ = ()
    _last = _LastParse()

    @staticmethod
    def _parse(source: bytes) -> list[tuple[str, str]]:
        pairs = []
        for line in source.split(b"\r\n") if source else ():
            name, _, value = line.partition(b":")
            pairs.append((_intern(name.strip().lower().decode("latin-1")), value.strip().decode("latin-1")))
        return pairs


class QueryPairs(_PairsView):
    """A raw query string's decoded ``(name, value)`` pairs, in order, blanks kept."""

    __slots__ = ()
    _last = _LastParse()

    @staticmethod
    def _parse(source: str) -> list[tuple[str, str]]:
        return parse_qsl(source, keep_blank_values=True)


def parse_cookies(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The cookies of the ``cookie`` header(s): the first occurrence of a name wins; quotes around a value go."""
    cookies: dict[str, str] = {}
    for hname, hvalue in headers:
        if hname == "cookie":
            for part in hvalue.split(";"):
                k, eq, v = part.partition("=")
                k = k.strip()
                if eq and k and k not in cookies:
                    v = v.strip()
                    if len(v) >= 2 and v[0] == v[-1] == '"':
                        v = v[1:-1]
                    cookies[k] = v
    return cookies


class Cookies(Mapping[str, str]):
    """The cookies of some headers (:func:`parse_cookies`), parsed on each access."""

    __slots__ = ("_headers",)

    _last = _LastParse()

    def __init__(self, headers: Sequence[tuple[str, str]]) -> None:
        self._headers = headers

    def _cookies(self) -> dict[str, str]:
        source, parsed = self._last.entry
        if source is not self._headers:
            parsed = parse_cookies(self._headers)
            self._last.entry = (self._headers, parsed)
        return parsed  # type: ignore[no-any-return]

    def __getitem__(self, name: str) -> str:
        return self._cookies()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._cookies().get(name, default)

    def __len__(self) -> int:
        return len(self._cookies())

    def __iter__(self) -> Iterator[str]:
        return iter(self._cookies())

    def __repr__(self) -> str:
        return repr(self._cookies())


@dataclass(slots=True)  # one per open connection (kept by the core for its event messages): no __dict__
class Request:
    """One HTTP request (a WebSocket upgrade, an Ajax GET or POST), as the transports hand it over.

    ``query`` and ``form`` are decoded ``(name, value)`` pairs in wire order; header names are matched
    case-insensitively. ``session`` is whatever the application's session mechanism attached (or {}).
    ``scope`` is the ASGI scope the request came with (None for a WebSocket through the picows bridge): what
    the host framework's middleware put there is readable through it, e.g. :attr:`host_session`, :attr:`user`.
    """

    method: str
    path: str
    query: Sequence[tuple[str, str]] = ()
    headers: Sequence[tuple[str, str]] = ()
    cookies: Mapping[str, str] = field(default_factory=dict)
    form: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    session: dict[str, Any] = field(default_factory=dict)
    client: tuple[str, int] | None = None
    scope: Mapping[str, Any] | None = None

    @property
    def host_session(self) -> dict[str, Any] | None:
        """The host framework's session (ASGI ``scope["session"]``, e.g. Starlette's ``SessionMiddleware``)."""
        session = self.scope.get("session") if self.scope is not None else None
        return session if isinstance(session, dict) else None

    @property
    def user(self) -> Any:
        """The host framework's authenticated user (ASGI ``scope["user"]``, e.g. Starlette's
        ``AuthenticationMiddleware``), or None."""
        return self.scope.get("user") if self.scope is not None else None

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def param(self, name: str) -> str | None:
        """A parameter from the query string, else from the form body (Ring's merged ``:params``)."""
        for key, value in self.query:
            if key == name:
                return value
        for key, value in self.form:
            if key == name:
                return value
        return None

    @property
    def client_id(self) -> str | None:
        """The ``client-id`` param, or None when missing or blank."""
        value = self.param("client-id")
        return value if value and value.strip() else None
