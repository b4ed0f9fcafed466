"""The server side of Sente's protocol as a state machine: connections, buffers, replies, keep-alive, timers.

The transport layers call ``ws_*``/``ajax_*`` when something happens and ``tick(now)`` when
``next_deadline()`` is reached, then carry out the actions from ``take_actions()``:
:class:`Send` (write one packed message to WebSocket connections), :class:`Respond` (complete an HTTP
request), :class:`Close`, and :class:`Dispatch` (an event message for the application).
This module holds registration, the WebSocket and the Ajax sides; the push path (send buffers, flushes,
delivery) is :class:`~sente.protocol.push.PushCore`, the core's base class, and the actions live in
:mod:`sente.protocol.model` (re-exported here).

Times are milliseconds from any monotonic clock the caller chooses. Connection handles are opaque
hashable tokens chosen by the transport.

Differences from Sente, on purpose: a connection is registered before its handshake goes out; pushes
to one client keep their order (one flush per transport window for all buffers, flushes in order);
client-sent ``:chsk/*`` events other than ping and pong arrive wrapped as ``[:chsk/bad-event ev]`` so
they cannot pose as system events; batches that wait for a client with no live channel (between
Ajax polls, or a WebSocket reconnecting within its grace period) are kept for ``undelivered_ttl_ms``
and delivered, in order, when it comes back (Sente retries 6 times over about the same span).

Several processes behind one port (a backplane other than :class:`LocalBackplane`, no sticky sessions):
an Ajax client is known cluster-wide, so a poll reaching a process that never saw it is held as a
long-poll, not answered with a handshake (Sente's rule for an unknown ``[uid client-id]`` applies to the
whole cluster). The process that attaches a poll claims the client; the others stop holding batches for
it and hand the ones they hold over, and the claimant delivers those first, waiting at most
``HANDOFF_WAIT_MS`` for them. Each process's registration of the client counts in presence separately
(the cluster registry counts per registration), so ``uidport-open``/``close`` still fire once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from csente.types import DecodeError

from ..packers import Packer
from .backplane import Backplane, LocalBackplane
from .config import Response, ServerConfig
from .events import (
    BAD_EVENT,
    DUMMY_CB_200,
    HANDSHAKE,
    NIL_UID,
    TIMEOUT,
    UIDPORT_CLOSE,
    UIDPORT_OPEN,
    WS_PING,
    WS_PONG,
    as_event,
)
from .model import (
    AJAX_BINARY_CONTENT_TYPE,
    AJAX_CONTENT_TYPE,
    TRANSPORTS,
    Action,
    Close,
    Dispatch,
    EventMsg,
    Handle,
    Respond,
    Send,
    Transport,
    _Client,
    _client_log,
    ajax_response,
    log,
)
from .push import PushCore
from .requests import Request
from .security import NO_CLIENT_ID, rejection
from .stats import counters

__all__ = [
    "AJAX_BINARY_CONTENT_TYPE", "AJAX_CONTENT_TYPE", "HANDOFF_WAIT_MS", "TRANSPORTS", "Action", "Close", "Dispatch",
    "EventMsg", "Handle", "Respond", "Send", "ServerCore", "Transport", "ajax_response", "log",
]


HANDOFF_WAIT_MS = 100
"""How long a claimed Ajax poll waits for the other processes' handoffs before delivering what it has."""


@dataclass(slots=True, eq=False)
class _Post:
    """An Ajax POST held until the application replies or ``lp_timeout_ms`` passes."""

    handle: Handle
    done: bool = False


class ServerCore(PushCore):
    """All protocol state of one server process, driven by plain method calls (timers: flushes, keep-alive,
    grace periods, timeouts)."""

    def __init__(self, packer: Packer, config: ServerConfig | None = None, backplane: Backplane | None = None) -> None:
        self.packer = packer
        self.config = config or ServerConfig()
        self.backplane: Backplane = backplane if backplane is not None else LocalBackplane()
        self.on_output: Callable[[], None] | None = None
        """Called when actions are queued outside a core call (a reply from the application)."""
        super().__init__()  # the push path's buffers
        self._clients: dict[tuple[Transport, Any, str], _Client] = {}
        self._uid_clients: dict[Transport, dict[Any, dict[str, _Client]]] = {"ws": {}, "ajax": {}}
        self._handles: dict[Handle, tuple[_Client, int]] = {}
        self._posts: dict[Handle, _Post] = {}
        self.stats = counters()
        self.backplane.bind(self)

    # ------------------------------------------------------------------ output and time

    def _emit_later(self, action: Action) -> None:
        self._actions.append(action)
        self._wake()

    def _wake(self) -> None:
        if self.on_output is not None:
            self.on_output()

    # ------------------------------------------------------------------ connected uids

    @property
    def ws_uids(self) -> frozenset[Any]:
        return self.backplane.uids("ws")

    @property
    def ajax_uids(self) -> frozenset[Any]:
        return self.backplane.uids("ajax")

    @property
    def any_uids(self) -> frozenset[Any]:
        return self.backplane.uids("any")

    def is_connected(self, uid: Any) -> bool:
        """Whether ``uid`` is in connected-uids: connected here or, through the backplane, anywhere."""
        return self.backplane.connected(uid)

    def _is_local(self, uid: Any) -> bool:
        return uid in self._uid_clients["ws"] or uid in self._uid_clients["ajax"]

    def _joined(self, client: _Client) -> None:
        if self.backplane.join(client.uid, client.transport):
            self._dispatch_system(UIDPORT_OPEN, client.uid, client)

    def _left(self, client: _Client) -> None:
        if self.backplane.leave(client.uid, client.transport):
            self._dispatch_system(UIDPORT_CLOSE, client.uid, client)

    def uid_left_elsewhere(self, uid: Any) -> None:
        """The cluster reports that ``uid`` left it with no client of ours seeing it (a dead worker or node)."""
        self._dispatch_system(UIDPORT_CLOSE, uid, None)
        self._wake()

    def uid_joined_elsewhere(self, uid: Any) -> None:
        """The cluster decided elsewhere (Redis, for several nodes) that ``uid`` is new to it: fire uidport-open."""
        self._dispatch_system(UIDPORT_OPEN, uid, None)
        self._wake()

    def close_uid_here(self, uid: Any) -> None:
        """Another process handled ``[:chsk/close]`` for ``uid``: close its connections in this one."""
        self._close_uid(uid)
        self._wake()

    def _dispatch_system(self, event_id: Any, uid: Any, client: _Client | None) -> None:
        self._emit(Dispatch(EventMsg(
            [event_id, uid],
            uid,
            client.client_id if client else None,
            client.request if client else None,
            client.transport if client else None,
        )))

    # ------------------------------------------------------------------ registration

    def _user_id(self, request: Request) -> Any:
        uid = self.config.user_id_fn(request)
        return NIL_UID if uid is None else uid

    def _register(self, transport: Transport, uid: Any, client_id: str, request: Request) -> _Client:
        key = (transport, uid, client_id)
        client = self._clients.get(key)
        if client is None:
            client = _Client(transport, uid, client_id, request)
            self._clients[key] = client
            self._uid_clients[transport].setdefault(uid, {})[client_id] = client
            if transport == "ajax":
                self.backplane.client_join(uid, client_id)
        return client

    def _attach(self, client: _Client, handle: Handle) -> None:
        client.conn += 1
        client.handle = handle
        self._handles[handle] = (client, client.conn)

    def _detach(self, client: _Client, now: float) -> None:
        """The channel is gone: start the grace period in which the client may come back."""
        client.handle = None
        grace = (
            self.config.ms_allow_reconnect_before_close_ws
            if client.transport == "ws"
            else self.config.ms_allow_reconnect_before_close_ajax
        )
        self._timers.schedule(now + grace, "grace", client, client.conn)

    def _on_grace(self, client: _Client, conn: int, now: float) -> None:
        if client.conn != conn or client.handle is not None:
            return  # came back in time
        self._unregister(client, now)

    def _unregister(self, client: _Client, now: float) -> None:
        del self._clients[(client.transport, client.uid, client.client_id)]
        by_uid = self._uid_clients[client.transport]
        siblings = by_uid[client.uid]
        del siblings[client.client_id]
        if not siblings:
            del by_uid[client.uid]
        client.conn += 1  # invalidates its timers
        if client.transport == "ajax":
            self.backplane.client_leave(client.uid, client.client_id)
        if client.transport == "ws" or client.polled:
            self._left(client)

    def _handshake(self, uid: Any, request: Request) -> str | bytes:
        data = self.config.handshake_data_fn(request)
        return self.packer.pack_envelope([HANDSHAKE, [uid, None, data]], None)

    # ------------------------------------------------------------------ WebSocket

    def ws_accept(self, request: Request) -> Response | None:
        """Whether to upgrade: None to accept, else the response refusing it."""
        if request.client_id is None:
            return NO_CLIENT_ID
        return rejection(self.config, request)

    def ws_open(self, handle: Handle, request: Request, now: float) -> None:
        """An accepted WebSocket is open: register it, then send the handshake."""
        client_id = request.client_id
        if client_id is None:
            raise ValueError("ws_open needs a request with a client-id (check it with ws_accept first)")
        uid = self._user_id(request)
        client = self._register("ws", uid, client_id, request)
        fresh = client.handle is None and client.conn == 0
        client.request = request
        self._attach(client, handle)
        client.activity, client.pinged = False, False
        self._emit(Send((handle,), self._handshake(uid, request)))
        if fresh:
            self._joined(client)
        if self.config.ws_kalive_ms is not None:
            self._timers.schedule(now + self.config.ws_kalive_ms / 2, "kalive", client, client.conn)
        self._deliver_pending(client, now)

    def ws_message(self, handle: Handle, data: str | bytes, now: float) -> None:
        """A frame arrived. Bad frames are logged and dropped; the connection stays open, as in Sente."""
        entry = self._handles.get(handle)
        if entry is None:
            return
        client, _ = entry
        client.activity = True
        try:
            payload, cb_id = self.packer.unpack_envelope(data)
        except DecodeError as e:
            self.stats.decode_errors += 1
            _client_log.warning("decode", "dropped an unreadable frame from client %r (uid %r): %s",
                                client.client_id, client.uid, e)
            return
        if isinstance(payload, list) and len(payload) == 1 and payload[0] is WS_PING:
            if _truthy(cb_id):
                self._emit(Send((handle,), self.packer.pack_envelope("pong", cb_id)))
            self._dispatch(client, [WS_PING], None)
            return
        if isinstance(payload, list) and len(payload) == 1 and payload[0] is WS_PONG:
            self._dispatch(client, [WS_PONG], None)
            return
        reply = self._ws_reply(client, handle, cb_id) if _truthy(cb_id) else None
        self._dispatch(client, _guard_system(as_event(payload)), reply)

    def _ws_reply(self, client: _Client, handle: Handle, cb_id: Any) -> Callable[[Any], bool]:
        def reply(value: Any) -> bool:
            if handle not in self._handles:
                return False
            self._emit_later(Send((handle,), self.packer.pack_envelope(value, cb_id)))
            return True

        return reply

    def _dispatch(self, client: _Client, event: list[Any], reply: Callable[[Any], bool] | None) -> None:
        self._emit(Dispatch(EventMsg(event, client.uid, client.client_id, client.request, client.transport, reply)))

    def ws_close(self, handle: Handle, now: float) -> None:
        """The WebSocket closed (either side). A stale connection's close is ignored, as in Sente."""
        entry = self._handles.pop(handle, None)
        if entry is None:
            return
        client, conn = entry
        if client.conn == conn and client.handle == handle:
            self._detach(client, now)

    def _on_kalive(self, client: _Client, conn: int, now: float) -> None:
        if client.conn != conn or client.handle is None or self.config.ws_kalive_ms is None:
            return
        if client.activity:
            client.activity, client.pinged = False, False
            self._timers.schedule(now + self.config.ws_kalive_ms / 2, "kalive", client, conn)
        elif client.pinged:
            self._emit(Close(client.handle, 1000))
        else:
            client.pinged = True
            self._emit(Send((client.handle,), self.packer.pack_envelope(WS_PING, None)))
            wait = self.config.ws_ping_timeout_ms
            delay = wait if wait is not None else self.config.ws_kalive_ms / 2
            self._timers.schedule(now + delay, "kalive", client, conn)

    # ------------------------------------------------------------------ Ajax

    def ajax_get(self, handle: Handle, request: Request, now: float) -> None:
        """An Ajax GET: the handshake (answered at once) or a long-poll (held)."""
        client_id = request.client_id
        if client_id is None:
            self.stats.rejected(self.config, "ajax", NO_CLIENT_ID)
            self._emit(Respond(handle, NO_CLIENT_ID))
            return
        refused = rejection(self.config, request)
        if refused is not None:
            self.stats.rejected(self.config, "ajax", refused)
            self._emit(Respond(handle, refused))
            return
        uid = self._user_id(request)
        known = ("ajax", uid, client_id) in self._clients or self.backplane.client_known(uid, client_id)
        client = self._register("ajax", uid, client_id, request)
        if request.param("handshake?") is not None or not known:
            self.stats.handshakes_ajax += 1
            client.request = request
            self._emit(Respond(handle, ajax_response(self._handshake(uid, request))))
            if client.handle is None:
                # a registered client with no channel must still expire if it never polls
                self._detach(client, now)
            return
        if client.handle is not None:
            self._emit(Respond(client.handle, ajax_response(self.packer.pack_envelope(TIMEOUT, None))))
            self._handles.pop(client.handle, None)
        self._attach(client, handle)
        claim = client.elsewhere is not None or not client.polled  # else this process owns its polls already
        client.elsewhere = None
        if not client.polled:
            client.polled = True
            self._joined(client)
        self._timers.schedule(now + self.config.lp_timeout_ms, "poll_timeout", client, client.conn)
        if claim:
            due = self.backplane.claim_poll(uid, client_id)
            if due > 0:
                client.handoffs_due = due
                client.handoff_at = len(client.pending)
                client.handoff_gen += 1
                self._timers.schedule(now + HANDOFF_WAIT_MS, "handoff_timeout", client, client.handoff_gen)
        self._deliver_pending(client, now)

    def ajax_claimed_elsewhere(self, uid: Any, client_id: str, owner: Any, now: float) -> None:
        """Process ``owner`` attached a poll of this Ajax client: hand it what is held here, hold nothing more.

        A poll still held here is stale (the client has one poll at a time): it is answered with a timeout.
        """
        client = self._clients.get(("ajax", uid, client_id))
        if client is None:
            return
        client.elsewhere = owner
        client.handoffs_due = 0
        batches, client.pending = client.pending, []
        client.pending_gen += 1
        if client.handle is not None:
            handle = client.handle
            self._handles.pop(handle, None)
            self._emit(Respond(handle, ajax_response(self.packer.pack_envelope(TIMEOUT, None))))
            self._detach(client, now)
        self.backplane.hand_off(uid, client_id, owner, batches)
        self._wake()

    def ajax_handoff(
        self, uid: Any, client_id: str, batches: list[str | bytes], now: float, final: bool = True
    ) -> None:
        """Batches another process held for this Ajax client: they go before any that arrived after our claim.

        ``final``: the other process's answer to our claim (delivery waits for every one, or ``HANDOFF_WAIT_MS``).
        """
        client = self._clients.get(("ajax", uid, client_id))
        if client is None:
            if batches:
                log.info("dropped %d handed-off batches for client %r: not registered here", len(batches), client_id)
            return
        if client.elsewhere is not None:  # claimed away again meanwhile: pass them on
            if batches:
                self.backplane.hand_off(uid, client_id, client.elsewhere, batches, final=False)
            return
        if batches:
            if not client.pending:
                client.pending_gen += 1
                self._timers.schedule(
                    now + self.config.undelivered_ttl_ms, "pending_expiry", client, client.pending_gen)
            at = min(client.handoff_at, len(client.pending))
            client.pending[at:at] = batches
            client.handoff_at = at + len(batches)
            overflow = len(client.pending) - self.config.max_pending_batches
            if overflow > 0:
                _client_log.warning("pending_cap", "dropped %d undelivered batches for client %r (cap reached)",
                                    overflow, client_id)
                del client.pending[:overflow]
                client.handoff_at = max(0, client.handoff_at - overflow)
        if final and client.handoffs_due > 0:
            client.handoffs_due -= 1
        self._deliver_pending(client, now)
        self._wake()

    def _on_handoff_timeout(self, client: _Client, gen: int, now: float) -> None:
        if client.handoff_gen == gen and client.handoffs_due:
            log.info("delivering to client %r without %d handoff(s): none within %d ms",
                     client.client_id, client.handoffs_due, HANDOFF_WAIT_MS)
            client.handoffs_due = 0
            self._deliver_pending(client, now)

    def _on_poll_timeout(self, client: _Client, conn: int, now: float) -> None:
        if client.conn != conn or client.handle is None:
            return
        handle = client.handle
        self._handles.pop(handle, None)
        self._emit(Respond(handle, ajax_response(self.packer.pack_envelope(TIMEOUT, None))))
        self._detach(client, now)

    def ajax_post(self, handle: Handle, request: Request, now: float) -> None:
        """An Ajax POST carrying one event; answered at once, or held for the application's reply."""
        refused = rejection(self.config, request)
        if refused is not None:
            self.stats.rejected(self.config, "ajax", refused, handshake=False)
            self._emit(Respond(handle, refused))
            return
        if request.param("binary?") not in (None, "", "false"):
            data: str | bytes | None = request.body
        else:
            data = request.param("ppstr")
        try:
            payload, cb_id = self.packer.unpack_envelope(data) if data is not None else (None, None)
        except DecodeError as e:
            self.stats.decode_errors += 1
            self._emit(Respond(handle, Response(500, e.msg, (("Content-Type", "text/plain; charset=utf-8"),))))
            return
        reply: Callable[[Any], bool] | None = None
        if _truthy(cb_id):
            post = _Post(handle)
            self._posts[handle] = post
            self._timers.schedule(now + self.config.lp_timeout_ms, "post_timeout", post)
            reply = self._ajax_reply(post)
        else:
            self._emit(Respond(handle, ajax_response(self.packer.pack_envelope(DUMMY_CB_200, None))))
        client_id = request.client_id
        if client_id is None:
            _client_log.warning("no_client_id", "dropped an Ajax event without a client-id: %r", payload)
            return
        event = _guard_system(as_event(payload))
        self._emit(Dispatch(EventMsg(event, self._user_id(request), client_id, request, "ajax", reply)))

    def _ajax_reply(self, post: _Post) -> Callable[[Any], bool]:
        def reply(value: Any) -> bool:
            if post.done:
                return False
            self._finish_post(post)
            self._emit_later(Respond(post.handle, ajax_response(self.packer.pack_envelope(value, None))))
            return True

        return reply

    def _finish_post(self, post: _Post) -> None:
        post.done = True
        self._posts.pop(post.handle, None)

    def _on_post_timeout(self, post: _Post, _conn: int, now: float) -> None:
        if not post.done:
            self._finish_post(post)
            self._emit(Respond(post.handle, ajax_response(self.packer.pack_envelope(TIMEOUT, None))))

    def ajax_gone(self, handle: Handle, now: float) -> None:
        """The HTTP client hung up on a held poll or POST."""
        post = self._posts.get(handle)
        if post is not None:
            self._finish_post(post)
            return
        entry = self._handles.pop(handle, None)
        if entry is not None:
            client, conn = entry
            if client.conn == conn and client.handle == handle:
                self._detach(client, now)


def _truthy(value: Any) -> bool:
    """Clojure's truthiness, which Sente applies to the cb slot: only nil and false are false (0 and "" are true)."""
    return value is not None and value is not False


def _guard_system(event: list[Any]) -> list[Any]:
    """Client-sent ``:chsk/*`` events (other than ping/pong) cannot pose as system events."""
    if event[0] is not BAD_EVENT and event[0].ns == "chsk":
        return [BAD_EVENT, event]
    return event
