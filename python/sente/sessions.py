"""Server-side sessions keyed by a cookie, and the CSRF token a page fetches to talk to Sente.

Sente leaves sessions to Ring middleware; a Python app needs something equivalent out of the box.
This store keeps sessions in memory under a random id carried by an HttpOnly cookie, like Ring's
memory store. The CSRF token lives in the session (``session["csrf-token"]``), which is where
:func:`sente.protocol.config.default_csrf_token` looks for it; a page gets it from any route that calls
:meth:`SessionStore.csrf_token` (the test app's ``GET /csrf-token``) and sends it back as the
``csrf-token`` query parameter (WebSocket, Ajax GET) or the ``X-CSRF-Token`` header (Ajax POST).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any


class SessionStore:
    """In-memory sessions with a size cap and an idle expiry (oldest evicted first)."""

    def __init__(self, cookie_name: str = "sente-session", max_sessions: int = 100_000, ttl_s: float = 86_400) -> None:
        self.cookie_name = cookie_name
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._sessions: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, cookies: Mapping[str, str]) -> dict[str, Any] | None:
        """The session named by the request's cookie, or None."""
        sid = cookies.get(self.cookie_name)
        if sid is None:
            return None
        entry = self._sessions.get(sid)
        if entry is None or entry[0] < time.monotonic() - self.ttl_s:
            self._sessions.pop(sid, None)
            return None
        self._sessions[sid] = (time.monotonic(), entry[1])
        self._sessions.move_to_end(sid)
        return entry[1]

    def get_or_create(self, cookies: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
        """The request's session, creating one if needed; the second value is a Set-Cookie header for a new one."""
        session = self.get(cookies)
        if session is not None:
            return session, None
        sid = secrets.token_urlsafe(24)
        session = {}
        self._sessions[sid] = (time.monotonic(), session)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session, f"{self.cookie_name}={sid}; Path=/; HttpOnly; SameSite=Strict"

    @staticmethod
    def csrf_token(session: dict[str, Any]) -> str:
        """The session's CSRF token, created on first use."""
        token = session.get("csrf-token")
        if token is None:
            token = session["csrf-token"] = secrets.token_urlsafe(60)
        return str(token)
