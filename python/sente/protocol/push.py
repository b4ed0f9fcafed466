"""The server core's push path: send buffers, flushes, fan-out to this process's clients and the backplane.

:class:`PushCore` is the base class of :class:`~sente.protocol.server.ServerCore`, which owns the registry of
clients (:mod:`.server`: registration, WebSocket, Ajax). A push is validated and encoded **once**, appended to
the send buffer of each transport with the uid, and flushed one window later: recipients are grouped by the
exact list of events they get, each distinct batch is packed once and goes out as one :class:`Send` for every
live WebSocket that gets it, or is held for a client with no live channel.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from csente.groups import collect, group, record, unchanged

from ..packers import Packed, Packer
from .backplane import Backplane, Recipients
from .config import ServerConfig
from .events import ALL_USERS_WITHOUT_UID, CLOSE, NIL_UID, make_event
from .model import TRANSPORTS, Action, Close, Handle, Respond, Send, Transport, _Client, _client_log, ajax_response, log
from .stats import Counters, batch_events
from .timers import SansIOCore

_REFUSED = object()  # what _encode gives for a push the packer cannot write


@dataclass(slots=True)
class _Buffer:
    """Pushes waiting for one transport's flush: per-uid events and broadcasts, in send order."""

    private: dict[Any, list[tuple[int, Any]]] = field(default_factory=dict)
    broadcast: list[tuple[int, Any, frozenset[Any] | None]] = field(default_factory=list)
    flush_at: float | None = None
    gen: int = 0  # identifies this buffer to its flush timer


class PushCore(SansIOCore[Action]):
    """Buffers, flushes and delivery of pushed batches; the registry it reads is :class:`ServerCore`'s."""

    packer: Packer
    config: ServerConfig
    backplane: Backplane
    stats: Counters
    _uid_clients: dict[Transport, dict[Any, dict[str, _Client]]]
    _handles: dict[Handle, tuple[_Client, int]]

    def __init__(self) -> None:
        super().__init__()
        self._buffers: dict[Transport, _Buffer] = {"ws": _Buffer(), "ajax": _Buffer()}
        self._seq = itertools.count()  # message order in the send buffers
        self._last: tuple[int, Any] | None = None  # the last push's (seq, encoding) entry, while others may share it
        self._sent: tuple[Any, list[Any], list[Any], Any] | None = None  # see _again

    @abstractmethod
    def is_connected(self, uid: Any) -> bool:
        """Whether ``uid`` is in connected-uids (the registry's answer)."""

    @abstractmethod
    def _detach(self, client: _Client, now: float) -> None:
        """A client's channel is gone (the registry starts its grace period)."""

    def send(self, uid: Any, event: Any, now: float, *, flush: bool = False) -> bool:
        """Buffer a push to every connection of ``uid``; True when the uid has a connection known to take it.

        Connections in other processes count: the flushed batch goes to them through the backplane, which may
        take it even for a uid it does not know yet (one that just connected on another node): that push goes
        out, but is not counted here.
        """
        if uid is None:
            raise ValueError("send needs a uid (use sente/all-users-without-uid for clients without one)")
        if uid is ALL_USERS_WITHOUT_UID:
            uid = NIL_UID
        given, again = event, self._again(event)
        event = again[0] if again is not None else make_event(event)
        if event[0] is CLOSE:
            if flush:
                self.flush(now)
            self._close_uid(uid)
            self.backplane.publish_close(uid)
            return self.is_connected(uid)
        here = False
        targets: list[Transport] = []
        for transport in TRANSPORTS:
            if uid in self._uid_clients[transport]:
                here = True
                targets.append(transport)
            elif self.backplane.remote(uid, transport):
                targets.append(transport)
        if not targets:
            return False
        if again is not None:
            encoded = again[1]
        else:
            encoded = self._encode(event)
            if encoded is _REFUSED:
                return False
            recorded = record(given)
            self._sent = None if recorded is None else (given, recorded, event, encoded)
        entry = self._entry_for(encoded)
        for transport in targets:
            buf = self._buffers[transport]
            entries = buf.private.get(uid)
            if entries is None:
                buf.private[uid] = [entry]
            else:
                entries.append(entry)
            if buf.flush_at is None:
                self._arm(transport, now)
        if flush:
            self.flush(now)
        if here:
            return True
        # what the backplane knows, not what it publishes on a guess (CompositeBackplane.known_remote)
        known = getattr(self.backplane, "known_remote", self.backplane.remote)
        return any(known(uid, t) for t in targets)

    def _again(self, event: Any) -> tuple[list[Any], Any] | None:
        """The checked event and its encoding when ``event`` is the object the last encoded send was given, with
        the same objects in it (a send loop): a Python walk and an encode per uid saved. None otherwise."""
        sent = self._sent
        if sent is not None and event is sent[0] and unchanged(event, sent[1]):
            return sent[2], sent[3]
        return None

    def _entry_for(self, encoded: Any) -> tuple[int, Any]:
        """A push's ``(seq, encoding)`` in the send buffers. The seq is its place in the send order: the previous
        push's, when that one was the same event encoded the same way (one event sent to many uids in a loop
        shares one entry, so their batches group and pack once), else the next one. Compared by encoding, not by
        object: an event changed between two sends goes out as each send saw it."""
        last = self._last
        if last is not None and _same_encoding(encoded, last[1]):
            return last
        self._last = last = (next(self._seq), encoded)
        return last

    def broadcast(self, event: Any, now: float, *, uids: Iterable[Any] | None = None) -> None:
        """Push one event, encoded once, to ``uids`` (default: every uid connected at flush time)."""
        event = make_event(event)
        encoded = self._encode(event)
        if encoded is _REFUSED:
            return
        if uids is None:
            targets = None
        elif type(uids) is frozenset and None not in uids:
            targets = uids  # immutable, as connected_uids gives it: kept as it is, not copied per event
        else:
            targets = frozenset(NIL_UID if u is None else u for u in uids)
        seq = next(self._seq)
        self._last = None
        for transport in TRANSPORTS:
            self._buffers[transport].broadcast.append((seq, encoded, targets))
            self._arm(transport, now)

    def _encode(self, event: Any) -> Any:
        """The packer's encoding of a push, or _REFUSED: a value the packer cannot write is dropped and
        counted (``pack_errors``), as Sente drops a push batch it cannot pack; nothing half-written goes out."""
        try:
            return self.packer.encode_event(event)
        except (TypeError, ValueError) as e:
            self._refused(1, e)
            return _REFUSED

    def _pack_batch(self, events: list[Any], recipients: int) -> Packed | None:
        """One batch packed, or None: the packer refused a value in it (transit packs at batch time) or raised
        otherwise (a custom packer); that batch is skipped and counted, the flush goes on."""
        try:
            return self.packer.pack_batch(events)
        except (TypeError, ValueError) as e:
            self._refused(len(events), e)
        except Exception as e:
            self.stats.send_errors += 1
            _client_log.warning("pack", "skipped a batch of %d events for %d uids: the packer raised %r",
                                len(events), recipients, e, exc_info=e)
        return None

    def _refused(self, events: int, error: Exception) -> None:
        self.stats.pack_errors += events
        _client_log.warning("refused", "dropped %d pushed event(s) the %s packer cannot write: %s", events,
                            self.packer.name, error)

    def _arm(self, transport: Transport, now: float) -> None:
        buf = self._buffers[transport]
        if buf.flush_at is None:
            window = self.config.send_buf_ms_ws if transport == "ws" else self.config.send_buf_ms_ajax
            buf.flush_at = now + window
            self._timers.schedule(buf.flush_at, "flush", transport, buf.gen)

    def _on_flush(self, transport: Transport, gen: int, now: float) -> None:
        if self._buffers[transport].gen == gen:
            self._flush(transport, now)

    def flush(self, now: float) -> None:
        """Flush both transports' buffers now (``flush=True`` pushes)."""
        self._flush("ws", now)
        self._flush("ajax", now)

    def _flush(self, transport: Transport, now: float) -> None:
        buf = self._buffers[transport]
        if buf.flush_at is None:
            return
        private, broadcasts = buf.private, buf.broadcast
        self._buffers[transport] = _Buffer(gen=buf.gen + 1)  # the old buffer's timer becomes a no-op
        # Recipients grouped by the exact list of events they get, so each distinct batch is packed once (C).
        groups = group(private, broadcasts, self._uid_clients[transport])
        if groups:  # the first push of this buffer was made one window before its flush_at
            window = self.config.send_buf_ms_ws if transport == "ws" else self.config.send_buf_ms_ajax
            self.stats.flush_latency.observe(max(0.0, now - buf.flush_at + window) / 1000.0)
        for events, uids in groups:
            self.stats.batch_events.observe(len(events))
            data = self._pack_batch(events, len(uids))
            if data is not None:
                self._deliver(transport, uids, data, now, len(events))
        self._publish(transport, private, broadcasts)

    def _publish(
        self,
        transport: Transport,
        private: dict[Any, list[tuple[int, Any]]],
        broadcasts: list[tuple[int, Any, frozenset[Any] | None]],
    ) -> None:
        """Hand this flush's batches to the backplane for clients in other processes.

        Remote clients get a uid's own pushes and the broadcasts as separate batches (the local merge of
        the two is per process); each distinct batch is packed once and handed over once, with every remote
        uid it is for (a broadcast to a uid set is one batch, however many uids).
        """
        backplane = self.backplane
        by_batch: dict[str | bytes, list[Any]] = {}
        for uid, entries in private.items():
            if backplane.remote(uid, transport):
                data = self._pack_batch([e for _, e in entries], 1)
                if data is not None:
                    by_batch.setdefault(data, []).append(uid)
        for data, uids in by_batch.items():
            self._hand_over(transport, uids, data)
        if not broadcasts or not backplane.remote_any(transport):
            return
        if all(t is None for _, _, t in broadcasts):
            data = self._pack_batch([e for _, e, _ in broadcasts], 0)
            if data is not None:
                self._hand_over(transport, None, data)
            return
        for _, encoded, targets in broadcasts:
            remote = None if targets is None else [u for u in targets if backplane.remote(u, transport)]
            if remote is None or remote:
                data = self._pack_batch([encoded], len(remote or ()))
                if data is not None:
                    self._hand_over(transport, remote, data)

    def _hand_over(self, transport: Transport, uids: list[Any] | None, data: str | bytes) -> None:
        """One batch to the backplane (for ``uids``, or everyone); a failure there skips it and nothing else."""
        try:
            if uids is None:
                self.backplane.publish(transport, None, data)
            else:
                self.backplane.publish_to(transport, uids, data)
        except Exception as e:
            self.stats.send_errors += 1
            _client_log.warning("publish", "a batch for other processes was not published: %r", e, exc_info=e)

    def deliver_remote(self, transport: Transport, uid: Any | None, data: str | bytes, now: float) -> None:
        """A batch another process flushed: write it to this process's clients of ``uid`` (every client if None;
        each uid of it if a :class:`~sente.protocol.backplane.Recipients`)."""
        by_uid = self._uid_clients[transport]
        if uid is None:
            self._deliver(transport, list(by_uid), data, now)
        elif type(uid) is Recipients:
            here = [u for u in uid if u in by_uid]
            if here:
                self._deliver(transport, here, data, now)
        elif uid in by_uid:
            self._deliver(transport, [uid], data, now)

    def _deliver(self, transport: Transport, uids: list[Any], data: str | bytes, now: float,
                 events: int | None = None) -> None:
        live, others = collect(self._uid_clients[transport], uids, transport == "ws")
        for client in others:  # held, or answering an Ajax poll
            if client.handle is None or client.pending or client.handoffs_due:
                self._hold(client, data, now)
            else:
                self._complete_poll(client, data, now)
        if live:
            self._emit(Send(tuple(live), data, push=True))
        if live or others:  # events x connections; a batch from another process is counted here, once
            self.stats.deliveries += (len(live) + len(others)) * (events or batch_events(self.packer, data))

    def _complete_poll(self, client: _Client, data: str | bytes, now: float) -> None:
        handle = client.handle
        self._handles.pop(handle, None)
        self._emit(Respond(handle, ajax_response(data)))
        self._detach(client, now)

    def _hold(self, client: _Client, data: str | bytes, now: float) -> None:
        """Keep a batch for a client with no live channel, for ``undelivered_ttl_ms``, capped."""
        if not client.pending:
            client.pending_gen += 1
            self._timers.schedule(now + self.config.undelivered_ttl_ms, "pending_expiry", client, client.pending_gen)
        client.pending.append(data)
        overflow = len(client.pending) - self.config.max_pending_batches
        if overflow > 0:
            _client_log.warning("pending_cap", "dropped %d undelivered batches for client %r (cap reached)",
                                overflow, client.client_id)
            del client.pending[:overflow]
            client.handoff_at = max(0, client.handoff_at - overflow)
        if client.handle is not None:
            self._deliver_pending(client, now)

    def _on_pending_expiry(self, client: _Client, gen: int, now: float) -> None:
        if client.pending_gen == gen and client.pending:
            log.info("dropped %d batches for client %r: no live channel within %d ms",
                     len(client.pending), client.client_id, self.config.undelivered_ttl_ms)
            client.pending.clear()
            client.handoff_at = 0

    def _deliver_pending(self, client: _Client, now: float) -> None:
        """A channel is back: WebSockets get every held batch in order, an Ajax poll the oldest one."""
        if not client.pending or client.handle is None or client.handoffs_due:
            return
        if client.transport == "ws":
            batches, client.pending = client.pending, []
            client.pending_gen += 1
            client.activity = True
            for data in batches:
                self._emit(Send((client.handle,), data, push=True))
        else:
            self._complete_poll(client, client.pending.pop(0), now)
            client.handoff_at = max(0, client.handoff_at - 1)
            if not client.pending:
                client.pending_gen += 1

    def _close_uid(self, uid: Any) -> None:
        for transport in TRANSPORTS:
            for client in list(self._uid_clients[transport].get(uid, {}).values()):
                if client.handle is not None:
                    self._emit(Close(client.handle, 1000))


def _same_encoding(a: Any, b: Any) -> bool:
    """Whether two encoded pushes are bound to go out as the same bytes: equal text or bytes (EDN), or the same
    objects (transit packs at flush time from the event's own objects); anything else is never merged."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is str or kind is bytes:
        return bool(a == b)
    return kind is list and len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
