"""The shared-memory backplane: how one worker's server core reaches the broker's other workers.

Presence lives in the shared uid registry of :mod:`csente.shm` (keys are the uids printed as EDN, so any
uid Sente allows works, up to the registry's key length); every local client registration is one
``uid_connect``/``uid_disconnect``, and the registry says when a uid enters or leaves the whole broker,
so uidport events fire once. A flushed batch is published once into every other worker's inbox
(``publish_all`` copies bytes, nothing is re-encoded); each worker drains its inbox when its wake-up
FIFO turns readable and writes the batches to its own clients of that uid.

Ajax clients without sticky sessions (see :mod:`sente.protocol.backplane`): every Ajax client registration is
also counted in the uid registry under its *client key* (:func:`client_key`: ``b"\x01" + client-id + b"\x00" +
uid EDN``, or ``b"\x01#"`` + a BLAKE2b digest of that when longer than the registry's ``max_key``; transport
AJAX); and every Ajax registration, polled or not, is counted under the uid's *registration key*
(:func:`registrations_key`: ``b"\x02" + uid EDN``, hashed likewise), which is what ``remote(uid, "ajax")``
reads: a push must reach a client that handshook on another worker and has not polled yet (presence, and so
``connected-uids``, still counts it only from its first poll). Both kinds of key start with a control byte,
which no EDN text does, so they are skipped wherever uids are listed.
A worker that attaches a poll of a client registered in other workers too publishes a claim to every worker;
each worker holding the client answers its claimant with one handoff record (the batches it held, maybe none).

Record kinds (a record carries an already-packed batch; nothing is re-encoded):

* ``KIND_WS_TEXT`` 1, ``KIND_WS_BINARY`` 2, ``KIND_AJAX_TEXT`` 4, ``KIND_AJAX_BINARY`` 5: a flushed batch for
  a uid's clients on that transport (key = the uid's EDN) or a broadcast (empty key), payload = the batch.
* ``shm.KIND_CONTROL`` 3, payload ``b"uidport-close"``: from the supervisor, a uid that left the broker when a
  dead worker was reclaimed (key = uid EDN; client keys among the reclaimed ones are ignored).
* ``shm.KIND_CONTROL`` 3, payload ``b"ajax-claim <worker index>"`` (``CLAIM``): that worker attached a poll of
  the Ajax client (key = client key).
* ``KIND_AJAX_HANDOFF`` 6, to the claimant only: the batches one worker held for the client (key = client key);
  payload = one flags byte (bit 0: final, the answer to the claim; bit 1: binary batches) followed by each
  batch as a 4-byte big-endian length and its bytes. Handoffs larger than a record are split; only the last
  part is final.
* ``KIND_CLOSE`` 7: Sente's ``[:chsk/close]`` sent on one worker (key = uid EDN, empty payload): every worker
  closes its connections of that uid.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from csente import shm

from .. import edn
from ..protocol.backplane import CorePeer, Transport, View

log = logging.getLogger("sente.cluster")

KIND_WS_TEXT, KIND_WS_BINARY, KIND_AJAX_TEXT, KIND_AJAX_BINARY = 1, 2, 4, 5  # 3 is shm.KIND_CONTROL
KIND_AJAX_HANDOFF = 6
KIND_CLOSE = 7
CONTROL_UID_LEFT = shm.KIND_CONTROL
CLAIM = b"ajax-claim"
CLIENT_PREFIX = b"\x01"
REGISTRATIONS_PREFIX = b"\x02"
_NOT_UIDS = (CLIENT_PREFIX[0], REGISTRATIONS_PREFIX[0])
FINAL, BINARY = 1, 2
_KINDS: dict[tuple[Transport, bool], int] = {
    ("ws", False): KIND_WS_TEXT,
    ("ws", True): KIND_WS_BINARY,
    ("ajax", False): KIND_AJAX_TEXT,
    ("ajax", True): KIND_AJAX_BINARY,
}
_BY_KIND = {kind: key for key, kind in _KINDS.items()}
_SHM_TRANSPORT = {"ws": shm.WS, "ajax": shm.AJAX, "any": shm.ANY}
DRAIN_BATCH = 256

OnBatch = Callable[[Transport, Any, "str | bytes"], None]
OnUidLeft = Callable[[Any], None]


def uid_key(uid: Any) -> bytes:
    """The registry key of a uid: its EDN text."""
    return edn.dumps(uid).encode()


def _fit(prefix: bytes, key: bytes, max_key: int) -> bytes:
    if len(key) > max_key:
        key = prefix + b"#" + hashlib.blake2b(key, digest_size=min(32, max_key - 2)).digest()
    return key


def client_key(uid: Any, client_id: str, max_key: int) -> bytes:
    """The registry key of an Ajax client ``[uid client-id]`` (see the module docstring)."""
    return _fit(CLIENT_PREFIX, CLIENT_PREFIX + client_id.encode() + b"\x00" + uid_key(uid), max_key)


def registrations_key(uid: Any, max_key: int) -> bytes:
    """The registry key counting a uid's Ajax registrations, polled or not (see the module docstring)."""
    return _fit(REGISTRATIONS_PREFIX, REGISTRATIONS_PREFIX + uid_key(uid), max_key)


def _frame(flags: int, batches: list[bytes]) -> bytes:
    return bytes([flags]) + b"".join(struct.pack(">I", len(b)) + b for b in batches)


def _unframe(payload: bytes) -> tuple[int, list[bytes]]:
    flags, out, i = payload[0], [], 1
    while i < len(payload):
        (n,) = struct.unpack_from(">I", payload, i)
        out.append(payload[i + 4:i + 4 + n])
        i += 4 + n
    return flags, out


class ShmBackplane:
    """A :class:`~sente.protocol.backplane.Backplane` over one worker's attachment to the broker's shared memory."""

    def __init__(self, state: shm.SharedState) -> None:
        if state.worker_index is None:
            raise ValueError("the backplane needs a worker's attachment (SharedState.attach(name, index))")
        self.state = state
        self.index: int = state.worker_index
        self._local: dict[tuple[Transport, Any], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_batch: OnBatch | None = None
        self._on_uid_left: OnUidLeft | None = None
        self._core: CorePeer | None = None
        self._clients: dict[bytes, tuple[Any, str]] = {}  # client keys registered here
        self._registrations: dict[Any, int] = {}  # Ajax registrations here, by uid

    # ------------------------------------------------------------------ presence

    def join(self, uid: Any, transport: Transport) -> bool:
        self._local[(transport, uid)] = self._local.get((transport, uid), 0) + 1
        return self.state.uid_connect(uid_key(uid), _SHM_TRANSPORT[transport])

    def leave(self, uid: Any, transport: Transport) -> bool:
        n = self._local.get((transport, uid), 0) - 1
        if n > 0:
            self._local[(transport, uid)] = n
        else:
            self._local.pop((transport, uid), None)
        return self.state.uid_disconnect(uid_key(uid), _SHM_TRANSPORT[transport])

    def uids(self, view: View) -> frozenset[Any]:
        keys = self.state.connected_uids(_SHM_TRANSPORT[view])
        return frozenset(edn.loads(key) for key in keys if key[0] not in _NOT_UIDS)

    def connected(self, uid: Any) -> bool:
        return self.state.holds(uid_key(uid))

    def remote(self, uid: Any, transport: Transport) -> bool:
        if transport == "ajax":  # every Ajax registration, polled or not
            total = self.state.uid_counts(registrations_key(uid, self.state.max_key))[1]
            return total > self._registrations.get(uid, 0)
        return self.state.uid_counts(uid_key(uid))[0] > self._local.get((transport, uid), 0)

    def remote_any(self, transport: Transport) -> bool:
        # Publishing a broadcast to an idle worker costs one copy; asking every worker first costs more.
        return self.state.workers > 1

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        binary = isinstance(data, bytes)
        payload = data if isinstance(data, bytes) else data.encode()
        key = b"" if uid is None else uid_key(uid)
        delivered = self.state.publish_all(_KINDS[(transport, binary)], key, payload)
        if delivered < self.state.workers - 1:
            log.warning("a %s batch reached %d of %d other workers (inbox full)", transport, delivered,
                        self.state.workers - 1)

    def publish_close(self, uid: Any) -> None:
        if self.state.publish_all(KIND_CLOSE, uid_key(uid), b"") < self.state.workers - 1:
            log.warning("a [:chsk/close] for %r reached only some workers (inbox full)", uid)

    # ------------------------------------------------------------------ Ajax clients across workers

    def bind(self, core: CorePeer) -> None:
        self._core = core

    def _client_key(self, uid: Any, client_id: str) -> bytes:
        return client_key(uid, client_id, self.state.max_key)

    def client_join(self, uid: Any, client_id: str) -> None:
        key = self._client_key(uid, client_id)
        if key in self._clients:
            return
        try:
            self.state.uid_connect(key, shm.AJAX)
        except shm.RegistryFull:
            log.warning("uid registry full: Ajax client %s is known to this worker only", client_id)
            return
        try:
            self.state.uid_connect(registrations_key(uid, self.state.max_key), shm.AJAX)
        except shm.RegistryFull:
            self.state.uid_disconnect(key, shm.AJAX)
            log.warning("uid registry full: Ajax client %s is known to this worker only", client_id)
            return
        self._clients[key] = (uid, client_id)
        self._registrations[uid] = self._registrations.get(uid, 0) + 1

    def client_leave(self, uid: Any, client_id: str) -> None:
        key = self._client_key(uid, client_id)
        if self._clients.pop(key, None) is not None:
            self.state.uid_disconnect(key, shm.AJAX)
            self.state.uid_disconnect(registrations_key(uid, self.state.max_key), shm.AJAX)
            n = self._registrations.get(uid, 0) - 1
            if n > 0:
                self._registrations[uid] = n
            else:
                self._registrations.pop(uid, None)

    def client_known(self, uid: Any, client_id: str) -> bool:
        return self.state.holds(self._client_key(uid, client_id))

    def claim_poll(self, uid: Any, client_id: str) -> int:
        key = self._client_key(uid, client_id)
        others = self.state.uid_counts(key)[1] - (1 if key in self._clients else 0)
        if others <= 0:
            return 0
        delivered = self.state.publish_all(shm.KIND_CONTROL, key, b"%s %d" % (CLAIM, self.index))
        if delivered < self.state.workers - 1:
            log.warning("an Ajax poll claim reached %d of %d other workers (inbox full)", delivered,
                        self.state.workers - 1)
        return others

    def hand_off(self, uid: Any, client_id: str, owner: Any, batches: list[str | bytes], final: bool = True) -> None:
        key = self._client_key(uid, client_id)
        binary = bool(batches) and isinstance(batches[0], bytes)
        raw = [b if isinstance(b, bytes) else b.encode() for b in batches]
        room = self.state.max_payload - 1
        parts: list[list[bytes]] = [[]]
        size = 0
        for b in raw:
            if 4 + len(b) > room:
                log.warning("dropped a %d-byte batch for client %s: too large to hand off", len(b), client_id)
                continue
            if size + 4 + len(b) > room:
                parts.append([])
                size = 0
            parts[-1].append(b)
            size += 4 + len(b)
        for i, part in enumerate(parts):
            flags = (FINAL if final and i == len(parts) - 1 else 0) | (BINARY if binary else 0)
            if not self.state.publish(int(owner), KIND_AJAX_HANDOFF, key, _frame(flags, part)):
                log.warning("could not hand %d batches for client %s to worker %s (inbox full)", len(part),
                            client_id, owner)

    def _now(self) -> float:
        return (self._loop.time() if self._loop is not None else time.monotonic()) * 1000.0

    def _on_claim(self, key: bytes, payload: bytes) -> None:
        client = self._clients.get(key)
        if client is None or self._core is None:
            return
        owner = int(payload[len(CLAIM):])
        if owner != self.index:
            self._core.ajax_claimed_elsewhere(client[0], client[1], owner, self._now())

    def _on_handoff(self, key: bytes, payload: bytes) -> None:
        flags, raw = _unframe(payload)
        client = self._clients.get(key)
        if client is None or self._core is None:
            if raw:
                log.info("dropped %d handed-off batches: the Ajax client is not registered here", len(raw))
            return
        batches: list[str | bytes] = list(raw) if flags & BINARY else [b.decode() for b in raw]
        self._core.ajax_handoff(client[0], client[1], batches, self._now(), final=bool(flags & FINAL))

    # ------------------------------------------------------------------ the inbox, on the event loop

    def start(self, on_batch: OnBatch, on_uid_left: OnUidLeft) -> None:
        """Read this worker's inbox on the running loop, handing each record to the callbacks."""
        self._loop = asyncio.get_running_loop()
        self._on_batch, self._on_uid_left = on_batch, on_uid_left
        self._loop.add_reader(self.state.wakeup_fd(), self._drain)
        self._drain()  # records published before we listened

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.state.wakeup_fd())
            self._loop = None

    def _drain(self) -> None:
        self.state.clear_wakeup()
        while True:
            records = self.state.drain(DRAIN_BATCH)
            for kind, key, payload in records:
                self._dispatch(kind, key, payload)
            if len(records) < DRAIN_BATCH:
                return

    def _dispatch(self, kind: int, key: bytes, payload: bytes) -> None:
        try:
            if kind == shm.KIND_CONTROL:
                if payload.startswith(CLAIM):
                    self._on_claim(key, payload)
                elif key[:1] and key[0] not in _NOT_UIDS and self._on_uid_left is not None:
                    self._on_uid_left(edn.loads(key))
                return
            if kind == KIND_AJAX_HANDOFF:
                self._on_handoff(key, payload)
                return
            if kind == KIND_CLOSE:
                if self._core is not None:
                    self._core.close_uid_here(edn.loads(key))
                return
            transport, binary = _BY_KIND[kind]
            uid = edn.loads(key) if key else None
            if self._on_batch is not None:
                self._on_batch(transport, uid, payload if binary else payload.decode())
        except Exception:  # one bad record must not stop the worker's inbox
            log.exception("dropped an unreadable inbox record (kind %d)", kind)
