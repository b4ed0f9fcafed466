"""The client's errors: what :func:`~sente.client.connect` and ``request`` raise, and how a failure reads."""

from __future__ import annotations

import ssl as _ssl


class SenteError(Exception):
    """Base of the client's errors."""


class ChskTimeout(SenteError, TimeoutError):
    """No reply in time (Sente's ``:chsk/timeout``: the local timer, or the server's Ajax reply timeout)."""


class ChskClosed(SenteError, ConnectionError):
    """Not connected, or the connection closed while waiting (Sente's ``:chsk/closed``)."""


class ChskError(SenteError):
    """The request failed (Sente's ``:chsk/error``): an Ajax HTTP or network error, an unreadable reply."""

    def __init__(self, message: str, status: int | None = None, body: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ConnectionRejected(SenteError):
    """The server refused the connection (403 bad CSRF token, 401, 500 no client-id...): status and body."""

    def __init__(self, transport: str, status: int, body: bytes) -> None:
        super().__init__(f"{transport} connection rejected: HTTP {status}: {body.decode('utf-8', 'replace')[:500]}")
        self.transport = transport
        self.status = status
        self.body = body


class ConnectTimeout(SenteError, TimeoutError):
    """No handshake within ``open_timeout`` (server unreachable, or not answering)."""


def describe_error(e: BaseException) -> str:
    """An exception as a line with its detail: a certificate failure says why (``self-signed certificate``...)."""
    cause: BaseException | None = e
    seen = 0
    while cause is not None and seen < 10:  # aiohttp wraps the ssl error (and is itself an ssl.CertificateError)
        message = getattr(cause, "verify_message", None)
        if isinstance(cause, _ssl.SSLCertVerificationError) and message:
            return f"{type(e).__name__}: certificate verify failed: {message}"
        if isinstance(cause, _ssl.SSLError) and getattr(cause, "reason", None):
            return f"{type(e).__name__}: SSL error: {cause.reason}"
        cause = getattr(cause, "certificate_error", None) or getattr(cause, "os_error", None) \
            or cause.__cause__ or cause.__context__
        seen += 1
    return f"{type(e).__name__}: {e}" if str(e) else repr(e)
