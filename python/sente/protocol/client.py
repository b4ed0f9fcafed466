"""Sente's client protocol as a state machine: state, callbacks, keep-alive, reconnect backoff, Ajax polling, :auto.

Like :mod:`sente.protocol.server`, nothing here does I/O. The I/O layer (:mod:`sente.client`) calls
``start``/``send``/``disconnect``... and reports what happened (``ws_*``, ``ajax_*``), calls ``tick(now)``
when ``next_deadline()`` is reached, and carries out the actions from ``take_actions()``:

* :class:`Connect` open a WebSocket; :class:`Poll` issue an Ajax GET; :class:`Post` issue an Ajax POST;
* :class:`SendFrame` write one WebSocket message; :class:`Disconnect` close the WebSocket / abort the poll;
* :class:`Reply` settle a waiting request; :class:`Receive` hand a message to the application.

Every connection attempt gets a number (``conn``) carried by its :class:`Connect`/:class:`Poll`; reports
about an older attempt are ignored (Sente's connection id), so a purposeful disconnect never reconnects.

Times are milliseconds: ``now`` from any monotonic clock, ``udt`` fields from ``wall_clock`` (epoch ms).
Randomness (cb-ids, backoff jitter) comes from an injectable :class:`random.Random`.

Behaviour follows Sente's cljs client (protocol.md §2.2-2.6, §3.1-3.5, §5); one deliberate difference:
requests waiting for a WebSocket reply are settled with ``:chsk/closed`` when that connection closes
(Sente lets them run into their timeout).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from csente.types import DecodeError, Keyword

from ..packers import Packer
from .events import BAD_EVENT, HANDSHAKE, TIMEOUT, WS_PING, WS_PONG, as_event, make_event
from .timers import SansIOCore

log = logging.getLogger("sente.client")

CLOSED = Keyword("chsk/closed")
ERROR = Keyword("chsk/error")
STATE = Keyword("chsk/state")
AJAX_CB = Keyword("ajax")
CB_ERRORS = frozenset({CLOSED, TIMEOUT, ERROR})

ClientType = Literal["auto", "ws", "ajax"]
Transport = Literal["ws", "ajax"]
CloseReason = Literal[
    "clean", "unexpected", "requested-disconnect", "requested-reconnect",
    "downgrading-ws-to-ajax", "ws-ping-timeout", "ws-error",
]


def exp_backoff(attempt: int, rng: random.Random, *, factor: int = 1000, max_ms: int | None = None) -> int:
    """Encore's ``exp-backoff`` as Sente uses it: uniform in ``[factor/2 · 2ⁿ, factor · 2ⁿ)`` ms, n capped at 36."""
    b = 2 ** min(attempt, 36)
    t: int = math.floor((b + rng.random() * b) * 0.5 * factor)
    return t if max_ms is None else min(t, max_ms)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Client options, named after Sente's, with its defaults (protocol.md §5.1). Times in ms."""

    type: ClientType = "auto"
    ws_kalive_ms: int | None = 20_000
    """The keep-alive check runs every ``ws_kalive_ms / 2``; None disables the client ping."""
    ws_ping_timeout_ms: int = 5_000
    ajax_timeout_ms: int = 60_000
    """How long an Ajax poll may take before it is re-issued (the XHR timeout); above the server's lp-timeout."""
    backoff_ms_fn: Callable[[int], int] | None = None
    """``attempt -> ms`` for attempts >= 2 (the first retry is immediate); default :func:`exp_backoff`."""
    max_backoff_ms: int | None = None
    """Cap on the default backoff (Sente has none: issue #125)."""

    def __post_init__(self) -> None:
        if self.type not in ("auto", "ws", "ajax"):
            raise ValueError(f"type must be 'auto', 'ws' or 'ajax', got {self.type!r}")


@dataclass(frozen=True, slots=True)
class LastClose:
    udt: float
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class ClientState:
    """Sente's state atom (protocol.md §5.2), with Python names: ``open`` is ``:open?`` and so on."""

    type: ClientType | Transport
    open: bool = False
    ever_opened: bool = False
    uid: Any = None
    handshake_data: Any = None
    last_close: LastClose | None = None
    last_ws_error: dict[str, Any] | None = None
    last_ws_close: dict[str, Any] | None = None
    udt_next_reconnect: float | None = None


@dataclass(frozen=True, slots=True)
class StateChange:
    """The data of a ``[:chsk/state ...]`` event: both states and Sente's transient flags."""

    old: ClientState
    new: ClientState
    open_changed: bool
    opened: bool
    closed: bool
    first_open: bool


# ---------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a WebSocket (attempt number ``conn``)."""

    conn: int


@dataclass(frozen=True, slots=True)
class Poll:
    """Issue an Ajax GET; ``handshake`` adds ``handshake?=1``."""

    conn: int
    handshake: bool
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Post:
    """POST one packed event; ``key`` names the waiting request (None: no reply wanted)."""

    data: str | bytes
    key: str | None
    timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class SendFrame:
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the WebSocket with ``code``/``reason``, or abort the Ajax poll."""

    transport: Transport
    code: int = 1000
    reason: str = "CLOSE_NORMAL"


@dataclass(frozen=True, slots=True)
class Reply:
    """Settle request ``key`` with ``value`` (the reply, or ``:chsk/timeout``/``:chsk/closed``/``:chsk/error``)."""

    key: str
    value: Any
    detail: Any = None


@dataclass(frozen=True, slots=True)
class Receive:
    """A message for the application: a push, ``:chsk/state``, ``:chsk/handshake`` or ``:chsk/ws-ping``."""

    event: list[Any]


Action = Connect | Poll | Post | SendFrame | Disconnect | Reply | Receive


# ---------------------------------------------------------------------------------------- the core


class ClientCore(SansIOCore[Action]):
    """All protocol state of one Sente client, driven by plain method calls (timers: request timeouts,
    keep-alive checks, reconnects)."""

    def __init__(
        self,
        packer: Packer,
        config: ClientConfig | None = None,
        *,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.packer = packer
        self.config = config or ClientConfig()
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock or (lambda: time.time() * 1000.0)
        self.state = ClientState(self.config.type)
        self.transport: Transport = "ajax" if self.config.type == "ajax" else "ws"
        self.attempt = 0  # Sente's retry counter: failed attempts since the last handshake/explicit connect
        self.conn = 0
        self.stopped = True
        super().__init__()
        self._cbs: dict[str, Transport] = {}  # waiting requests -> the transport they went out on
        self._pings: set[str] = set()
        self._ajax_keys = itertools.count(1)
        self._comms = 0  # bumped by every frame sent or received (Sente's udt-last-comms)
        self._handshakes = 0  # handshakes of the current transport object (first-handshake?)
        self._ws_handshaked = False  # :auto: has the WebSocket ever completed a handshake?

    # ------------------------------------------------------------------ state

    def _set_state(self, new: ClientState) -> None:
        old = self.state
        if new == old:
            return
        self.state = new
        opened = new.open and not old.open
        closed = old.open and not new.open
        change = StateChange(old, new, opened or closed, opened, closed, opened and not old.ever_opened)
        self._emit(Receive([STATE, change]))

    def _closed(self, reason: CloseReason, **extra: Any) -> None:
        self._set_state(replace(self.state, open=False, last_close=LastClose(self.wall_clock(), reason), **extra))

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Connect (Sente's ``chsk-connect!``): the retry counter starts again from 0."""
        self.stopped = False
        self.attempt = 0
        self._connect()

    def _connect(self) -> None:
        self.conn += 1
        if self.state.udt_next_reconnect is not None:
            self._set_state(replace(self.state, udt_next_reconnect=None))
        if self.transport == "ws":
            self._emit(Connect(self.conn))
        else:
            self._poll()

    def disconnect(self, now: float, reason: CloseReason = "requested-disconnect") -> None:
        """Stop for good (until ``start``): no reconnects; waiting WebSocket requests get ``:chsk/closed``."""
        self.stopped = True
        self.conn += 1  # whatever the old connection reports from now on is stale
        self._fail_ws_cbs()
        self._emit(Disconnect(self.transport, 1000, "CLOSE_NORMAL"))
        self._closed(reason, udt_next_reconnect=None)

    def reconnect(self, now: float) -> None:
        """Sente's ``chsk-reconnect!``: disconnect, then connect afresh (under :auto, WebSocket first again)."""
        self.disconnect(now, "requested-reconnect")
        if self.config.type == "auto":
            self.transport = "ws"
            self._ws_handshaked = False
        self._handshakes = 0 if self.config.type == "auto" else self._handshakes
        self.start(now)

    def break_connection(self, now: float, code: int = 3000) -> None:
        """For tests (``chsk-break-connection!``): drop the connection as if the network failed; it reconnects."""
        self._emit(Disconnect(self.transport, code, "CLOSE_ABNORMAL"))

    def _retry(self, now: float) -> None:
        """A connection attempt failed or a connection closed: try again, at once the first time, then backing off."""
        if self.stopped:
            return
        self.attempt += 1
        self.conn += 1
        delay = 0 if self.attempt == 1 else self._backoff(self.attempt)
        if delay <= 0:
            self._connect()
            return
        self._set_state(replace(self.state, udt_next_reconnect=self.wall_clock() + delay))
        self._timers.schedule(now + delay, "retry", None, self.conn)

    def _backoff(self, attempt: int) -> int:
        if self.config.backoff_ms_fn is not None:
            return self.config.backoff_ms_fn(attempt)
        return exp_backoff(attempt, self.rng, max_ms=self.config.max_backoff_ms)

    def _on_retry(self, _target: Any, conn: int, now: float) -> None:
        if conn == self.conn and not self.stopped:
            self._connect()

    # ------------------------------------------------------------------ sending

    def send(
        self, event: Any, now: float, *, reply: bool = False, timeout_ms: int | None = None
    ) -> tuple[bool, str | None]:
        """Send an event; with ``reply`` a request key is returned and settled later by a :class:`Reply`.

        Returns ``(sent, key)``. When the client is not open nothing is sent and the request (if any) is
        settled at once with ``:chsk/closed``, as Sente does.
        """
        ev = make_event(event)
        if reply and (timeout_ms is None or timeout_ms < 0):
            raise ValueError("a request needs a timeout >= 0 ms, as in Sente")
        key = self._new_key() if reply else None
        if not self.state.open:
            if key is not None:
                self._emit(Reply(key, CLOSED))
            return False, key
        if self.transport == "ws":
            self._send_ws(ev, key, timeout_ms, now)
        else:
            self._emit(Post(self.packer.pack_envelope(ev, AJAX_CB if key else None), key, timeout_ms))
            if key is not None:
                self._wait(key, "ajax", timeout_ms, now)
        return True, key

    def _new_key(self) -> str:
        if self.transport == "ajax":
            return f"ajax-{next(self._ajax_keys)}"
        while True:  # Sente: the first 6 characters of a random UUID string, i.e. 6 hex digits
            key = f"{self.rng.getrandbits(24):06x}"
            if key not in self._cbs:
                return key

    def _send_ws(self, ev: list[Any], key: str | None, timeout_ms: int | None, now: float) -> None:
        self._comms += 1
        self._emit(SendFrame(self.packer.pack_envelope(ev, key)))
        if key is not None:
            self._wait(key, "ws", timeout_ms, now)

    def _wait(self, key: str, transport: Transport, timeout_ms: int | None, now: float) -> None:
        self._cbs[key] = transport
        if timeout_ms is not None:
            self._timers.schedule(now + timeout_ms, "cb_timeout", key)

    def _settle(self, key: str, value: Any, detail: Any = None) -> None:
        if self._cbs.pop(key, None) is None:
            return
        if key in self._pings:
            self._pings.discard(key)
            if value != "pong":
                self._reconnect_after_failed_ping()
            return
        self._emit(Reply(key, value, detail))

    def _on_cb_timeout(self, key: str, _conn: int, now: float) -> None:
        self._settle(key, TIMEOUT)

    def _fail_ws_cbs(self) -> None:
        for key in [k for k, t in self._cbs.items() if t == "ws"]:
            if key in self._pings:
                self._pings.discard(key)
                del self._cbs[key]
            else:
                self._settle(key, CLOSED)

    # ------------------------------------------------------------------ incoming messages

    def _handshake(self, data: Any, now: float) -> None:
        if not isinstance(data, list | tuple) or len(data) < 2:
            log.warning("ignored a malformed handshake: %r", data)
            return
        uid = data[0]
        hs_data = data[2] if len(data) > 2 else None  # Sente <= 1.20 sent [uid nil] without handshake data
        first = self._handshakes == 0
        self._handshakes += 1
        self.attempt = 0
        if self.transport == "ws":
            self._ws_handshaked = True
        self._set_state(replace(
            self.state, type=self.transport, open=True, ever_opened=True, uid=uid,
            handshake_data=hs_data, udt_next_reconnect=None,
        ))
        self._emit(Receive([HANDSHAKE, [uid, None, hs_data, first]]))
        if self.transport == "ws" and self.config.ws_kalive_ms is not None:
            self._timers.schedule(now + self.config.ws_kalive_ms / 2, "kalive", self._comms, self.conn)

    def _batch(self, payload: Any) -> None:
        if not isinstance(payload, list | tuple):
            log.warning("ignored a message that is neither a reply, a handshake, a ping nor a batch: %r", payload)
            return
        for item in payload:
            event = as_event(item)
            if event[0] is not BAD_EVENT and event[0].ns == "chsk":
                log.warning("ignored a :chsk/* event inside a batch (Sente asserts against it): %r", item)
                continue
            self._emit(Receive(event))

    # ------------------------------------------------------------------ WebSocket reports

    def ws_message(self, conn: int, data: str | bytes, now: float) -> None:
        """A frame arrived on WebSocket attempt ``conn``."""
        if conn != self.conn:
            return
        self._comms += 1
        try:
            payload, cb_id = self.packer.unpack_envelope(data)
        except DecodeError as e:
            log.warning("dropped an unreadable frame: %s", e)
            return
        if cb_id is not None:  # a reply: replies and pushes differ only in the cb slot
            if isinstance(cb_id, str):
                self._settle(cb_id, payload)
            return
        if isinstance(payload, list) and payload and payload[0] is HANDSHAKE:
            self._handshake(payload[1] if len(payload) > 1 else None, now)
        elif payload is WS_PING:
            self._send_ws([WS_PONG], None, None, now)
            self._emit(Receive([WS_PING]))
        else:
            self._batch(payload)

    def ws_error(self, conn: int, error: Any, now: float) -> None:
        """The WebSocket failed (could not connect, refused upgrade, protocol error); a close report follows."""
        if conn != self.conn:
            return
        self._set_state(replace(self.state, last_ws_error={"udt": self.wall_clock(), "ev": error}))
        if self.config.type == "auto" and self.transport == "ws" and not self._ws_handshaked:
            self._downgrade(now)

    def _downgrade(self, now: float) -> None:
        """:auto: a WebSocket that never completed a handshake failed; go to Ajax, for good (no way back)."""
        log.info("WebSocket failed before any handshake: downgrading to Ajax long-polling")
        self.conn += 1
        self._fail_ws_cbs()
        self._emit(Disconnect("ws", 1000, "CLOSE_NORMAL"))
        self._closed("downgrading-ws-to-ajax")
        self.transport = "ajax"
        self._handshakes = 0
        self.attempt = 0
        self._connect()

    def ws_closed(self, conn: int, now: float, code: int | None = None, reason: str = "", clean: bool = False) -> None:
        """WebSocket attempt ``conn`` is over (closed by either side, or never opened)."""
        if conn != self.conn:
            return
        self.conn += 1
        self._fail_ws_cbs()
        last_ws_close = {"udt": self.wall_clock(), "code": code, "reason": reason, "clean?": clean}
        self._closed("clean" if clean else "unexpected", last_ws_close=last_ws_close)
        self._retry(now)

    def _on_kalive(self, comms: int, conn: int, now: float) -> None:
        if conn != self.conn or not self.state.open or self.config.ws_kalive_ms is None:
            return
        if comms == self._comms:  # nothing sent or received for a whole interval: ping, expecting "pong"
            key = self._new_key()
            self._pings.add(key)
            self._send_ws([WS_PING], key, self.config.ws_ping_timeout_ms, now)
        self._timers.schedule(now + self.config.ws_kalive_ms / 2, "kalive", self._comms, conn)

    def _reconnect_after_failed_ping(self) -> None:
        log.info("no pong within %d ms: reconnecting", self.config.ws_ping_timeout_ms)
        self.conn += 1
        self._fail_ws_cbs()
        self._emit(Disconnect("ws", 1000, "CLOSE_NORMAL"))
        self._closed("ws-ping-timeout")
        self.attempt = 0
        self._connect()

    # ------------------------------------------------------------------ Ajax reports

    def _poll(self) -> None:
        self._emit(Poll(self.conn, not self.state.open, self.config.ajax_timeout_ms))

    def ajax_poll_done(
        self, conn: int, now: float, data: str | bytes | None = None, *, error: Any = None, timed_out: bool = False
    ) -> None:
        """Ajax GET number ``conn`` ended: a response body, a client-side timeout, or an error (HTTP or network)."""
        if conn != self.conn or self.stopped:
            return
        if timed_out:
            self.conn += 1
            self._poll()
            return
        payload: Any = None
        if error is None:
            try:
                payload, _ = self.packer.unpack_envelope(data if data is not None else "")
            except DecodeError as e:
                error = f"unreadable poll response: {e}"
        if error is not None:
            log.debug("Ajax poll failed: %s", error)
            self._closed("unexpected")
            self._retry(now)
            return
        self.conn += 1
        self.attempt = 0
        if isinstance(payload, list) and payload and payload[0] is HANDSHAKE:
            self._handshake(payload[1] if len(payload) > 1 else None, now)
        else:
            if not self.state.open:
                self._set_state(replace(self.state, open=True))
            if payload is not TIMEOUT:
                self._batch(payload)
        self._poll()

    def ajax_post_done(
        self, key: str | None, now: float, data: str | bytes | None = None, *, error: Any = None,
        timed_out: bool = False,
    ) -> None:
        """The POST for request ``key`` (None: no reply wanted) ended."""
        if timed_out:
            if key is not None:
                self._settle(key, TIMEOUT)
            return
        if error is not None:
            self._closed("unexpected")
            if key is not None:
                self._settle(key, ERROR, error)
            return
        if not data:
            if key is not None:
                self._settle(key, ERROR, "empty response")
            return
        try:
            payload, _ = self.packer.unpack_envelope(data)
        except DecodeError as e:
            if key is not None:
                self._settle(key, ERROR, f"unreadable response: {e}")
            return
        if key is not None:
            self._settle(key, payload)
        if not self.state.open and not self.stopped:
            self._set_state(replace(self.state, open=True))


def is_cb_error(value: Any) -> bool:
    """Sente's ``cb-error?``: one of ``:chsk/closed``, ``:chsk/timeout``, ``:chsk/error``."""
    return isinstance(value, Keyword) and value in CB_ERRORS
