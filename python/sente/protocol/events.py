"""Events ``[event-id ?data]``: validation, the ``:chsk/bad-event`` wrapping and event ids given as strings."""

from __future__ import annotations

from typing import Any

from csente.types import Keyword

BAD_EVENT = Keyword("chsk/bad-event")
HANDSHAKE = Keyword("chsk/handshake")
WS_PING = Keyword("chsk/ws-ping")
WS_PONG = Keyword("chsk/ws-pong")
UIDPORT_OPEN = Keyword("chsk/uidport-open")
UIDPORT_CLOSE = Keyword("chsk/uidport-close")
CLOSE = Keyword("chsk/close")
TIMEOUT = Keyword("chsk/timeout")
DUMMY_CB_200 = Keyword("chsk/dummy-cb-200")
NIL_UID = Keyword("sente/nil-uid")
ALL_USERS_WITHOUT_UID = Keyword("sente/all-users-without-uid")


def event_id(value: str | Keyword) -> Keyword:
    """An event id from a ``Keyword`` or an ``"ns/name"`` string; the namespace is required, as in Sente."""
    kw = Keyword(value) if isinstance(value, str) else value
    if not isinstance(kw, Keyword) or kw.ns is None:
        raise ValueError(f"an event id needs a namespace, like 'my-app/event': got {value!r}")
    return kw


def is_event(value: Any) -> bool:
    """Sente's ``valid-event?``: a vector of one or two items whose first is a namespaced keyword."""
    return (
        isinstance(value, (list, tuple))
        and 1 <= len(value) <= 2
        and isinstance(value[0], Keyword)
        and value[0].ns is not None
    )


def as_event(value: Any) -> list[Any]:
    """The event itself when valid, else ``[:chsk/bad-event value]`` (what Sente routes for bad input)."""
    return list(value) if is_event(value) else [BAD_EVENT, value]


def make_event(event: Any) -> list[Any]:
    """An outgoing event from ``[id, data]`` with the id as Keyword or string; raises ValueError if invalid."""
    if not isinstance(event, (list, tuple)) or not 1 <= len(event) <= 2:
        raise ValueError(f"an event is [event-id] or [event-id, data]: got {event!r}")
    return [event_id(event[0]), *event[1:]]
