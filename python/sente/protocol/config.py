"""Server options, named after Sente's and with Sente's defaults (protocol.md §4.1)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

from .requests import Request

SKIP_CSRF_CHECK = "sente/skip-CSRF-check"
"""Return this from ``csrf_token_fn`` to skip the CSRF check for a request (Sente's ``:sente/skip-CSRF-check``)."""


@dataclass(frozen=True)
class Response:
    """A plain HTTP response the protocol wants sent: rejections, errors, Ajax bodies."""

    status: int
    body: str | bytes
    headers: tuple[tuple[str, str], ...] = ()


def default_user_id(request: Request) -> Any:
    """Sente's default ``user-id-fn``: the ``uid`` in the session."""
    return request.session.get("uid")


def default_csrf_token(request: Request) -> str | None:
    """Sente's default ``csrf-token-fn``: the token the session holds."""
    for key in ("csrf-token", "ring.middleware.anti-forgery/anti-forgery-token", "__anti-forgery-token"):
        token = request.session.get(key)
        if token is not None:
            return str(token)
    return None


@dataclass(frozen=True)
class ServerConfig:
    """Everything that shapes the server's protocol behaviour. Times are milliseconds, sizes bytes."""

    user_id_fn: Callable[[Request], Any] = default_user_id
    csrf_token_fn: Callable[[Request], str | None] | None = default_csrf_token
    handshake_data_fn: Callable[[Request], Any] = lambda request: None
    allowed_origins: Literal["all"] | Collection[str] = "all"
    authorized_fn: Callable[[Request], bool] | None = None
    reject_fn: Callable[[Request], Response | None] | None = None
    bad_csrf_response: Response = Response(403, "Bad CSRF token")
    bad_origin_response: Response = Response(403, "Unauthorized origin")
    unauthorized_response: Response = Response(401, "Unauthorized request")
    ws_kalive_ms: int | None = 25_000
    ws_ping_timeout_ms: int | None = 10_000
    lp_timeout_ms: int = 20_000
    send_buf_ms_ws: int = 30
    send_buf_ms_ajax: int = 100
    ms_allow_reconnect_before_close_ws: int = 2_500
    ms_allow_reconnect_before_close_ajax: int = 5_000
    undelivered_ttl_ms: int = 3_100
    """How long a batch waits for a client with no live channel (between polls, reconnecting) before it is dropped."""
    max_ws_message_bytes: int = 4 * 1024 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_outbound_bytes: int = 8 * 1024 * 1024
    """Slow-consumer cap: a WebSocket holding more unsent bytes is closed with ``slow_consumer_close_code``."""
    slow_consumer_close_code: int = 1008
    max_pending_batches: int = 100
    """Cap on batches waiting for one client with no live channel; the oldest are dropped beyond it."""
    max_head_bytes: int = 16 * 1024
    """Largest request head (request line and headers; WebSocket upgrades too): larger is answered 431."""
    max_header_count: int = 100
    """Most header lines in a request head: more is answered 431."""
    head_timeout_ms: int | None = 10_000
    """Time to send a complete request head, from connect (or a later request's first byte): else 408 and closed.
    Covers silent connections and ones that never upgrade nor poll; None turns it off."""
    body_timeout_ms: int | None = 30_000
    """Time to send a request body once its head is complete: else 408 and closed (a slow POST); None turns it off."""
    max_queued_events_per_client: int = 100
    """Fairness: event messages one connection (or Ajax client) may have waiting in the receive buffer. At the cap
    its WebSocket is no longer read until the handlers catch up (TCP backpressure) and an Ajax POST is answered 429;
    a WebSocket at the cap whose frames (already read) find the whole buffer full loses them and is closed with
    ``flood_close_code``. Others' messages are never dropped for it."""
    flood_close_code: int = 1008

    def __post_init__(self) -> None:
        if not 0 < self.lp_timeout_ms < 60_000:
            raise ValueError("lp_timeout_ms must be between 0 and 60000 (exclusive), as in Sente")
        if self.send_buf_ms_ws < 0 or self.send_buf_ms_ajax < 0:
            raise ValueError("send buffer windows must be >= 0 ms (0: flush as soon as the event loop is free)")
        if self.max_head_bytes < 64 or self.max_header_count < 1 or self.max_queued_events_per_client < 1:
            raise ValueError("max_head_bytes must be >= 64, max_header_count and max_queued_events_per_client >= 1")
        if any(t is not None and t <= 0 for t in (self.head_timeout_ms, self.body_timeout_ms)):
            raise ValueError("head_timeout_ms and body_timeout_ms must be positive, or None to disable them")
        if self.ws_kalive_ms is not None and self.ws_kalive_ms <= 0:
            raise ValueError("ws_kalive_ms must be positive, or None to disable the server keep-alive")
