"""The parts of an HTTP request the protocol reads: params, headers, cookies, the session."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


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
