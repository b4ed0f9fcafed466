"""Sessions keyed by a cookie, and the CSRF token a page fetches to talk to Sente.

Sente leaves sessions to Ring middleware; a Python app needs something equivalent out of the box. Two
stores share one interface (``load``, ``new``, ``save``):

* :class:`SessionStore` keeps sessions in this process's memory under a random id in an HttpOnly cookie,
  like Ring's memory store. Right for one process.
* :class:`SignedCookieSessions` keeps the (small, JSON-able) session in the cookie itself, signed with
  HMAC-SHA256, so every worker of a broker (or every node) reads the same session with no shared store.

:func:`default_store` picks the signed store when ``SENTE_SESSION_SECRET`` is set and the memory store otherwise.
``sente serve`` always sets it (:func:`resolve_secret`): from the environment, else from a secret file created once
(``--session-secret-file``, default ``$XDG_STATE_HOME/sente/session-secret``), so sessions survive restarts and
every worker reads every session. Cookies are HttpOnly, SameSite=Strict, and ``Secure`` when the store's ``secure``
is set (default :data:`SECURE_DEFAULT`, which ``sente serve`` sets from ``--secure-cookies``, on under TLS).

The CSRF token lives in the session (``session["csrf-token"]``), where
:func:`sente.protocol.config.default_csrf_token` looks for it; a page gets it from a route that calls
:meth:`csrf_token` (``ChannelSocketServer.asgi(csrf_token_path=...)``) and sends it back as the ``csrf-token``
query parameter (WebSocket, Ajax GET) or the ``X-CSRF-Token`` header (POST).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SECRET_ENV = "SENTE_SESSION_SECRET"
MIN_SECRET_CHARS = 16
SECURE_DEFAULT = False
"""Whether new stores mark their cookie ``Secure`` (sent over HTTPS only); ``sente serve`` sets it."""

log = logging.getLogger("sente.sessions")


class _Store:
    cookie_name: str
    max_age_s: float
    secure: bool

    def _cookie(self, value: str) -> str:
        # a browser-session cookie, as Ring's
        secure = "; Secure" if self.secure else ""
        return f"{self.cookie_name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"

    def get_or_create(self, cookies: Mapping[str, str]) -> tuple[dict[str, Any], bool]:
        """The request's session, or a new one (then True: save it to send its cookie)."""
        session = self.load(cookies)
        return (session, False) if session is not None else (self.new(), True)

    def load(self, cookies: Mapping[str, str]) -> dict[str, Any] | None:
        raise NotImplementedError

    def new(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def csrf_token(session: dict[str, Any]) -> str:
        """The session's CSRF token, created on first use (save the session afterwards if it is new)."""
        token = session.get("csrf-token")
        if token is None:
            token = session["csrf-token"] = secrets.token_urlsafe(60)
        return str(token)


class SessionStore(_Store):
    """In-memory sessions with a size cap and an idle expiry (oldest evicted first)."""

    def __init__(self, cookie_name: str = "sente-session", max_sessions: int = 100_000, ttl_s: float = 86_400,
                 *, secure: bool | None = None) -> None:
        self.cookie_name = cookie_name
        self.secure = SECURE_DEFAULT if secure is None else secure
        self.max_sessions = max_sessions
        self.max_age_s = ttl_s
        self._sessions: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._sids: dict[int, str] = {}  # id(session) -> sid of every stored session (they stay alive while stored)

    def load(self, cookies: Mapping[str, str]) -> dict[str, Any] | None:
        """The session named by the request's cookie, or None."""
        sid = cookies.get(self.cookie_name)
        if sid is None:
            return None
        entry = self._sessions.get(sid)
        if entry is None or entry[0] < time.monotonic() - self.max_age_s:
            self._drop(sid)
            return None
        self._sessions[sid] = (time.monotonic(), entry[1])
        self._sessions.move_to_end(sid)
        return entry[1]

    def new(self) -> dict[str, Any]:
        return {}

    def save(self, session: dict[str, Any]) -> str | None:
        """Store a new session; the Set-Cookie value for it (None: a stored session, changed in place)."""
        if id(session) in self._sids:
            return None
        sid = secrets.token_urlsafe(24)
        self._sessions[sid] = (time.monotonic(), session)
        self._sids[id(session)] = sid
        while len(self._sessions) > self.max_sessions:
            self._drop(next(iter(self._sessions)))
        return self._cookie(sid)

    def _drop(self, sid: str) -> None:
        entry = self._sessions.pop(sid, None)
        if entry is not None:
            self._sids.pop(id(entry[1]), None)


class SignedCookieSessions(_Store):
    """Sessions carried in a signed cookie: the same session in every process that knows the secret."""

    def __init__(self, secret: str | bytes, cookie_name: str = "sente-session", max_age_s: float = 86_400,
                 *, secure: bool | None = None) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the session secret must be at least {MIN_SECRET_CHARS} characters")
        self._key = secret.encode() if isinstance(secret, str) else secret
        self.cookie_name = cookie_name
        self.secure = SECURE_DEFAULT if secure is None else secure
        self.max_age_s = max_age_s

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, payload, hashlib.sha256)).decode().rstrip("=")

    def load(self, cookies: Mapping[str, str]) -> dict[str, Any] | None:
        """The session in the request's cookie when its signature holds and it has not expired, else None."""
        value = cookies.get(self.cookie_name)
        if value is None or "." not in value:
            return None
        body, signature = value.rsplit(".", 1)
        if not signature.isascii() or not hmac.compare_digest(self._sign(body.encode()), signature):
            return None  # (compare_digest refuses non-ASCII str: a forged cookie must not raise)
        try:
            issued, session = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError):
            return None
        if not isinstance(session, dict) or issued < time.time() - self.max_age_s:
            return None
        return session

    def new(self) -> dict[str, Any]:
        return {}

    def save(self, session: dict[str, Any]) -> str:
        """The Set-Cookie value carrying ``session`` (values must be JSON-able); send it whenever it changed."""
        body = base64.urlsafe_b64encode(json.dumps([int(time.time()), session]).encode()).decode().rstrip("=")
        return self._cookie(f"{body}.{self._sign(body.encode())}")


Sessions = SessionStore | SignedCookieSessions


def default_store(cookie_name: str = "sente-session", *, secure: bool | None = None) -> Sessions:
    """Signed cookies when ``SENTE_SESSION_SECRET`` is set (``sente serve``, brokers, clusters), memory otherwise."""
    secret = os.environ.get(SECRET_ENV)
    if secret:
        return SignedCookieSessions(secret, cookie_name, secure=secure)
    return SessionStore(cookie_name, secure=secure)


# ---------------------------------------------------------------------- a secret that survives restarts


def default_secret_path() -> Path:
    """``$XDG_STATE_HOME/sente/session-secret`` (``~/.local/state/sente/session-secret`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "sente" / "session-secret"


def read_secret(path: str | os.PathLike[str]) -> str:
    """The secret a file holds (surrounding whitespace stripped); ValueError when it is too short to sign with."""
    secret = Path(path).read_text(encoding="utf-8").strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"{path}: the session secret must be at least {MIN_SECRET_CHARS} characters")
    return secret


def load_or_create_secret(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """The secret in ``path``, created there when the file does not exist (mode 0600, its directory 0700,
    written whole before it appears, so processes racing to create it all read the same); (secret, created)."""
    target = Path(path)
    if target.exists():
        return read_secret(target), False
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(temporary, target)  # fails if another process created it meanwhile: then that one is read
            created = True
        except FileExistsError:
            created = False
    finally:
        os.unlink(temporary)
    return read_secret(target), created


def resolve_secret(path: str | os.PathLike[str] | None = None) -> str:
    """The session secret ``sente serve`` signs cookies with, put in ``SENTE_SESSION_SECRET`` for this process and
    its workers: that variable when set, else the secret file ``path`` (default :func:`default_secret_path`),
    created with a loud warning when missing. When no file can be written there, a warning says sessions will not
    survive a restart and a random secret is used."""
    secret = os.environ.get(SECRET_ENV)
    if secret:
        return secret
    file = Path(path) if path is not None else default_secret_path()
    try:
        secret, created = load_or_create_secret(file)
    except (OSError, ValueError) as e:
        secret = secrets.token_urlsafe(48)
        log.warning("cannot use the session secret file %s (%s): using a random secret, so every session ends "
                    "when this server restarts; give one with --session-secret-file or %s",
                    file, e.strerror if isinstance(e, OSError) else e, SECRET_ENV)
    else:
        if created:
            log.warning("generated a new session secret in %s: sessions now survive restarts of this server; keep the "
                        "file private, and give every node of a cluster the same secret (--session-secret-file or %s)",
                        file, SECRET_ENV)
    os.environ[SECRET_ENV] = secret
    return secret



class HostSessions:
    """The host framework's session as Sente's: ``ChannelSocketServer(sessions=HostSessions())``.

    Sente reads the session that ASGI middleware put in ``scope["session"]`` (Starlette's and FastAPI's
    ``SessionMiddleware``), so a login route's ``request.session["uid"] = "alice"`` is the handshake's uid (the
    default ``user_id_fn``) and the CSRF token lives in that session too (the default ``csrf_token_fn``). No
    cookie of our own; the middleware saves what changed. WebSockets must then reach Sente through the ASGI
    stack (the middleware runs there): ``sente serve`` uses uvicorn's ASGI WebSocket for such a server.
    """

    csrf_token = staticmethod(_Store.csrf_token)
