"""What the server core says and keeps: its actions and event messages, and its record of one client.

Shared by the core's modules (:mod:`.server`: registration, WebSocket and Ajax; :mod:`.push`: buffers,
flushes and delivery); :mod:`sente.protocol.server` re-exports the public names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import Response
from .ratelog import RateLimitedLog
from .requests import Request

log = logging.getLogger("sente.server")
_client_log = RateLimitedLog(log)  # what a client can cause: one line per interval per kind, ids shown with repr

Transport = Literal["ws", "ajax"]
TRANSPORTS: tuple[Transport, ...] = ("ws", "ajax")
Handle = Hashable
AJAX_CONTENT_TYPE = (("Content-Type", "text/html; charset=utf-8"),)
AJAX_BINARY_CONTENT_TYPE = (("Content-Type", "application/octet-stream"),)


@dataclass(slots=True)
class EventMsg:
    """An event from a client (or a system event) for the application's handlers."""

    event: list[Any]
    uid: Any
    client_id: str | None
    request: Request | None
    transport: Transport | None
    reply: Callable[[Any], bool] | None = None

    @property
    def id(self) -> Any:
        return self.event[0]

    @property
    def data(self) -> Any:
        return self.event[1] if len(self.event) > 1 else None


@dataclass(slots=True, frozen=True)
class Send:
    """Write ``data`` (one packed message: a text frame for str, binary for bytes) to each connection."""

    handles: tuple[Handle, ...]
    data: str | bytes
    push: bool = False  # a batch of pushed events (counts as activity, subject to the slow-consumer cap)


@dataclass(slots=True, frozen=True)
class Respond:
    """Complete the HTTP request ``handle`` with ``response``."""

    handle: Handle
    response: Response


@dataclass(slots=True, frozen=True)
class Close:
    """Close the connection (WebSocket close code, or drop the held HTTP request)."""

    handle: Handle
    code: int = 1000


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Hand an event message to the application."""

    msg: EventMsg


Action = Send | Respond | Close | Dispatch


@dataclass(slots=True, eq=False)
class _Client:
    """One ``[transport uid client-id]`` registration and its current channel, if any."""

    transport: Transport
    uid: Any
    client_id: str
    request: Request
    handle: Handle | None = None
    conn: int = 0  # bumped for every new channel; stale timers and closes carry an older value
    polled: bool = False  # ajax: has long-polled at least once (only then does it count as connected)
    activity: bool = False  # ws: a frame arrived or a push went out since the last keep-alive check
    pinged: bool = False  # ws: the last keep-alive check sent a ping
    pending: list[str | bytes] = field(default_factory=list)  # packed batches waiting for a live channel
    pending_gen: int = 0
    elsewhere: Any = None  # ajax: the process holding this client's current poll (then nothing is held here)
    handoffs_due: int = 0  # ajax: handoffs still awaited after a claim (delivery waits for them)
    handoff_at: int = 0  # ajax: where in ``pending`` handed-off batches go (before those that came after the claim)
    handoff_gen: int = 0


def ajax_response(body: str | bytes, status: int = 200) -> Response:
    """An Ajax answer holding one packed message: text as http-kit sends a string, bytes (binary packers) raw."""
    return Response(status, body, AJAX_CONTENT_TYPE if isinstance(body, str) else AJAX_BINARY_CONTENT_TYPE)
