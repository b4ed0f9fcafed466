"""The shared-memory backplane: how one worker's server core reaches the broker's other workers.

Presence lives in the shared uid registry of :mod:`csente.shm` (keys are the uids printed as EDN); every
local client registration is one
``uid_connect``/``uid_disconnect``, and the registry says when a uid enters or leaves the whole broker,
so uidport events fire once. A flushed batch is published once into every other worker's inbox
(``publish_all`` copies bytes, nothing is re-encoded); each worker drains its inbox when its wake-up
FIFO turns readable and writes the batches to its own clients of that uid.

Any uid works: one whose EDN is longer than the registry's ``max_key`` (112 bytes) is keyed by ``b"\x03#"`` + a
BLAKE2b digest of it (:func:`registry_key`), and its full EDN is kept out of line while a worker holds it: a
file ``<segment>.uid-<digest hex>.<worker index>`` next to the segment, written before the registry shows the
uid and removed when the worker's last connection of it goes (each worker only touches its own files; the
supervisor removes a dead worker's after reading them, and all of them when it exits). Listing uids reads a
digest's text from any holder's file (cached); batch and close records carry uids in their payload, which has
no such limit.

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
  every client on that transport (a broadcast; empty key), payload = the batch.
* The same kinds plus ``TO_UIDS`` (16): one batch for the clients of several uids (empty key): payload = the
  uid count (4 bytes, big-endian), each uid's EDN as a 4-byte length and its bytes, then the batch. A worker
  gets only its share: the uids it holds on that transport (the registry's per-worker columns say which).
  One record per batch, whatever the number of uids.
* ``shm.KIND_CONTROL`` 3, payload ``b"uidport-close"``: from the supervisor, a uid that left the broker when a
  dead worker was reclaimed (key = uid EDN; client keys among the reclaimed ones are ignored).
* ``shm.KIND_CONTROL`` 3, payload ``b"ajax-claim <worker index>"`` (``CLAIM``): that worker attached a poll of
  the Ajax client (key = client key).
* ``shm.KIND_CONTROL`` 3, payload ``b"drained <worker index>"`` (``DRAINED``), empty key: that worker is draining
  (SIGTERM) and has published everything it had accepted; see :meth:`ShmBackplane.settle`.
* ``KIND_AJAX_HANDOFF`` 6, to the claimant only: the batches one worker held for the client (key = client key);
  payload = one flags byte (bit 0: final, the answer to the claim; bit 1: binary batches) followed by each
  batch as a 4-byte big-endian length and its bytes. Handoffs larger than a record are split; only the last
  part is final.
* ``KIND_CLOSE`` 7: Sente's ``[:chsk/close]`` sent on one worker (empty key, payload = uid EDN): every worker
  closes its connections of that uid.
* ``KIND_PART`` 8: one piece of an unkeyed record larger than an inbox takes (a big batch, or one for very many
  uids): payload = producer index (1 byte), flags (1: first piece, 2: last piece), the record's kind (2 bytes,
  big-endian), then the piece. A producer sends a record's pieces consecutively, so the consumer joins them per
  producer and handles the whole record at the last piece.

Backpressure: a record that finds the other worker's inbox lane full waits in this worker's *outbox* (one queue
per destination, in order: nothing for that worker overtakes it) and is retried every :data:`RETRY_S` until
the consumer has made room. Only past :attr:`ShmBackplane.max_outbox_bytes` of waiting records (true
overload, or a worker that stopped reading), for a keyed record too large for an inbox (handoffs split
themselves first, claims and closes are small), or when the destination worker exits with records waiting for
it (they were for its connections; its replacement must not get them), is a record dropped: counted in that
worker's ``dropped`` (``sente_ring_drops_total``) and logged once per interval with a count, not once per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from csente import shm

from .. import edn
from ..protocol.backplane import CorePeer, Recipients, Transport, View
from ..protocol.ratelog import RateLimitedLog
from ..protocol.stats import counters

log = logging.getLogger("sente.cluster")
_rate_log = RateLimitedLog(log)  # drops and unreadable records: one line per interval per kind, with a count

KIND_WS_TEXT, KIND_WS_BINARY, KIND_AJAX_TEXT, KIND_AJAX_BINARY = 1, 2, 4, 5  # 3 is shm.KIND_CONTROL
KIND_AJAX_HANDOFF = 6
KIND_CLOSE = 7
KIND_PART = 8
PART_FIRST, PART_LAST = 1, 2
_PART = struct.Struct(">BBH")  # producer index, flags, the whole record's kind
CONTROL_UID_LEFT = shm.KIND_CONTROL
CLAIM = b"ajax-claim"
DRAINED = b"drained"
CLIENT_PREFIX = b"\x01"
REGISTRATIONS_PREFIX = b"\x02"
LONG_PREFIX = b"\x03"
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
TO_UIDS = 16
RETRY_S = 0.001
"""How soon records waiting in the outbox are offered again to a full inbox."""
MAX_OUTBOX_BYTES = 64 << 20
"""Default cap on the records one worker holds back for full inboxes, in bytes, before it drops (and counts)."""
_U32 = struct.Struct(">I")
LONG_CACHE = 4096
UIDPORT_CLOSE = b"uidport-close"
"""Payload of the supervisor's control record asking a worker to fire ``:chsk/uidport-close`` for the uid in its
key (+ b" " + the uid's EDN when the key is a digest)."""
_UNKNOWN = object()

OnBatch = Callable[[Transport, Any, "str | bytes"], None]
OnUidLeft = Callable[[Any], None]


def uid_key(uid: Any) -> bytes:
    """The registry key of a uid: its EDN text."""
    return edn.dumps(uid).encode()


def _fit(prefix: bytes, key: bytes, max_key: int) -> bytes:
    if len(key) > max_key:
        key = prefix + b"#" + hashlib.blake2b(key, digest_size=min(32, max_key - 2)).digest()
    return key


def registry_key(uid: Any, max_key: int) -> bytes:
    """The registry key of a uid: its EDN text (:func:`uid_key`), or a digest of it when longer than ``max_key``."""
    return _fit(LONG_PREFIX, uid_key(uid), max_key)


def _long_path(segment: str, key: bytes, worker: int) -> str:
    return f"{segment}.uid-{key[2:].hex()}.{worker}"


def write_long_uid(segment: str, key: bytes, worker: int, text: bytes) -> None:
    """Store a long uid's EDN out of line while ``worker`` holds it: a file next to the segment, named after the
    digest and the worker (each worker writes and removes only its own, so no two race)."""
    path = _long_path(segment, key, worker)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(text)
    os.replace(tmp, path)


def remove_long_uid(segment: str, key: bytes, worker: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_long_path(segment, key, worker))


def read_long_uid(segment: str, key: bytes, workers: int) -> bytes | None:
    """The EDN of the long uid with registry ``key``, from whichever worker holds it; None if none has it now."""
    for worker in range(workers):
        with contextlib.suppress(FileNotFoundError), open(_long_path(segment, key, worker), "rb") as f:
            return f.read()
    return None


def remove_long_uids(segment: str, worker: int | None = None) -> None:
    """Remove the out-of-line uids of one worker (it died), or of every worker (the broker stops)."""
    directory, name = os.path.split(segment)
    prefix, suffix = f"{name}.uid-", "" if worker is None else f".{worker}"
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            if entry.startswith(prefix) and entry.endswith(suffix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, entry))


def client_key(uid: Any, client_id: str, max_key: int) -> bytes:
    """The registry key of an Ajax client ``[uid client-id]`` (see the module docstring)."""
    return _fit(CLIENT_PREFIX, CLIENT_PREFIX + client_id.encode() + b"\x00" + uid_key(uid), max_key)


def registrations_key(uid: Any, max_key: int) -> bytes:
    """The registry key counting a uid's Ajax registrations, polled or not (see the module docstring)."""
    return _fit(REGISTRATIONS_PREFIX, REGISTRATIONS_PREFIX + uid_key(uid), max_key)


def _frame(flags: int, batches: list[bytes]) -> bytes:
    return bytes([flags]) + b"".join(struct.pack(">I", len(b)) + b for b in batches)


def _uids_frame(keys: list[bytes]) -> bytes:
    return _U32.pack(len(keys)) + b"".join(_U32.pack(len(k)) + k for k in keys)


def _unframe_uids(payload: bytes) -> tuple[list[bytes], bytes]:
    """(each uid's EDN, the batch) of a ``TO_UIDS`` record."""
    (n,) = _U32.unpack_from(payload, 0)
    keys, i = [], 4
    for _ in range(n):
        (k,) = _U32.unpack_from(payload, i)
        keys.append(payload[i + 4:i + 4 + k])
        i += 4 + k
    return keys, payload[i:]


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
        self.max_outbox_bytes = MAX_OUTBOX_BYTES
        self._long: dict[bytes, Any] = {}  # digest keys of long uids -> the uid (a cache)
        self._uids: dict[View, tuple[int, frozenset[Any]]] = {}  # view -> (state.changes() it was read at, uids)
        self._drained: set[int] = set()  # workers that said they are draining (settle)
        self._parts: dict[int, list[bytes]] = {}  # KIND_PART records received so far, by producer
        self._outbox: dict[int, deque[tuple[int, bytes, bytes]]] = {}  # records waiting for room, by destination
        self._outbox_bytes = 0
        self._outbox_pid: dict[int, int] = {}  # the destination's pid when its records began to wait
        self._retry: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ presence

    def _key(self, uid: Any) -> bytes:
        """The uid's registry key (see :func:`registry_key`)."""
        return registry_key(uid, self.state.max_key)

    def _holds_here(self, uid: Any) -> bool:
        return (("ws", uid) in self._local) or (("ajax", uid) in self._local)

    def join(self, uid: Any, transport: Transport) -> bool:
        key = self._key(uid)
        if key[:1] == LONG_PREFIX and not self._holds_here(uid):  # readable before the registry shows it
            write_long_uid(self.state.path, key, self.index, uid_key(uid))
        self._local[(transport, uid)] = self._local.get((transport, uid), 0) + 1
        return self.state.uid_connect(key, _SHM_TRANSPORT[transport])

    def leave(self, uid: Any, transport: Transport) -> bool:
        n = self._local.get((transport, uid), 0) - 1
        if n > 0:
            self._local[(transport, uid)] = n
        else:
            self._local.pop((transport, uid), None)
        key = self._key(uid)
        left = self.state.uid_disconnect(key, _SHM_TRANSPORT[transport])
        if key[:1] == LONG_PREFIX and not self._holds_here(uid):
            remove_long_uid(self.state.path, key, self.index)
        return left

    def _uid(self, key: bytes) -> Any:
        """The uid of a registry key (:data:`_UNKNOWN` for a digest whose text no worker has out of line now)."""
        if key[:1] != LONG_PREFIX:
            return edn.loads(key)
        uid = self._long.get(key, _UNKNOWN)
        if uid is _UNKNOWN:
            text = read_long_uid(self.state.path, key, self.state.workers)
            if text is None:
                return _UNKNOWN
            uid = edn.loads(text)
            if len(self._long) >= LONG_CACHE:
                self._long.clear()
            self._long[key] = uid
        return uid

    def uids(self, view: View) -> frozenset[Any]:
        """The broker's connected uids: one scan of the registry per change anywhere in it, not one per call (a
        Sente app reads ``connected_uids.any`` for every push)."""
        changes = self.state.changes()
        cached = self._uids.get(view)
        if cached is not None and cached[0] == changes:
            return cached[1]
        keys = self.state.connected_uids(_SHM_TRANSPORT[view])
        found = [self._uid(key) for key in keys if key[0] not in _NOT_UIDS]
        uids = frozenset(uid for uid in found if uid is not _UNKNOWN)
        if len(uids) == len(found):  # a long uid whose text is not readable yet is looked for again next time
            self._uids[view] = (changes, uids)
        return uids

    def connected(self, uid: Any) -> bool:
        return self.state.holds(self._key(uid))

    def remote(self, uid: Any, transport: Transport) -> bool:
        if transport == "ajax":  # every Ajax registration, polled or not
            total = self.state.uid_counts(registrations_key(uid, self.state.max_key))[1]
            return total > self._registrations.get(uid, 0)
        return self.state.uid_counts(self._key(uid))[0] > self._local.get((transport, uid), 0)

    def remote_any(self, transport: Transport) -> bool:
        # Publishing a broadcast to an idle worker costs one copy; asking every worker first costs more.
        return self.state.workers > 1

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        if uid is not None:
            self.publish_to(transport, [uid], data)
            return
        payload = data if isinstance(data, bytes) else data.encode()
        kind = _KINDS[(transport, isinstance(data, bytes))]
        for dest in range(self.state.workers):
            if dest != self.index:
                self._send(dest, kind, b"", payload)

    def publish_to(self, transport: Transport, uids: list[Any], data: str | bytes) -> None:
        payload = data if isinstance(data, bytes) else data.encode()
        kind = _KINDS[(transport, isinstance(data, bytes))] | TO_UIDS
        column = _SHM_TRANSPORT[transport]
        me = 1 << self.index
        shares: dict[int, list[bytes]] = {}
        for uid in uids:
            # Ajax: every registration counts, polled or not (as in remote())
            key = registrations_key(uid, self.state.max_key) if transport == "ajax" else self._key(uid)
            mask = self.state.holders(key, column) & ~me
            text = uid_key(uid)
            dest = 0
            while mask:
                if mask & 1:
                    shares.setdefault(dest, []).append(text)
                mask >>= 1
                dest += 1
        for dest, texts in shares.items():
            self._send(dest, kind, b"", _uids_frame(texts) + payload)

    def publish_close(self, uid: Any) -> None:
        for dest in range(self.state.workers):
            if dest != self.index:
                self._send(dest, KIND_CLOSE, b"", uid_key(uid))

    # ------------------------------------------------------------------ the outbox (backpressure)

    def _send(self, dest: int, kind: int, key: bytes, payload: bytes) -> None:
        """Publish to ``dest``, or queue behind what waits for it already (see the module docstring); a record
        larger than an inbox takes goes as consecutive ``KIND_PART`` records."""
        if len(payload) <= self.state.max_payload:
            self._enqueue(dest, kind, key, payload)
        elif key:
            self._drop(dest, 1, f"a {len(payload)}-byte keyed record is larger than an inbox takes")
        elif self._outbox_bytes + len(payload) > self.max_outbox_bytes:  # all pieces or none
            self._drop(dest, 1, f"worker {dest}'s inbox is full and {self._outbox_bytes} bytes wait for it already")
        else:
            room = self.state.max_payload - _PART.size
            last = (len(payload) - 1) // room
            for i in range(last + 1):
                flags = (PART_FIRST if i == 0 else 0) | (PART_LAST if i == last else 0)
                piece = payload[i * room:(i + 1) * room]
                self._enqueue(dest, KIND_PART, b"", _PART.pack(self.index, flags, kind) + piece)

    def _enqueue(self, dest: int, kind: int, key: bytes, payload: bytes) -> None:
        box = self._outbox.get(dest)
        if box is None:
            if self.state.publish(dest, kind, key, payload, count_drop=False):
                return
            box = self._outbox[dest] = deque()
            self._outbox_pid[dest] = self.state.worker_pid(dest)
        if self._outbox_bytes + len(payload) > self.max_outbox_bytes:
            self._drop(dest, 1, f"worker {dest}'s inbox is full and {self._outbox_bytes} bytes wait for it already")
            return
        box.append((kind, key, payload))
        self._outbox_bytes += len(payload)
        self._retry_soon()

    def _retry_soon(self) -> None:
        if self._retry is not None:
            return
        try:
            loop = self._loop or asyncio.get_running_loop()
        except RuntimeError:  # no loop to retry on (not started): give up on what waits
            self._give_up()
            return
        self._retry = loop.call_later(RETRY_S, self._offer)

    def _offer(self) -> None:
        """Offer the waiting records again, oldest first, per destination."""
        self._retry = None
        for dest, box in list(self._outbox.items()):
            if self.state.worker_pid(dest) != self._outbox_pid[dest]:  # it died: its connections went with it
                self._drop(dest, len(box), f"worker {dest} exited with them waiting")
                self._outbox_bytes -= sum(len(payload) for _, _, payload in box)
                box.clear()
            while box:
                kind, key, payload = box[0]
                if not self.state.publish(dest, kind, key, payload, count_drop=False):
                    break
                box.popleft()
                self._outbox_bytes -= len(payload)
            if not box:
                del self._outbox[dest]
        if self._outbox:
            self._retry_soon()

    async def settle(self, timeout: float) -> None:
        """The broker-wide half of a drain (the caller flushed its buffers just before): tell every other worker
        so, behind everything this worker published (a ``DRAINED`` record), then keep delivering what they publish
        until each has said the same and this worker's outbox is empty, or ``timeout`` (seconds) passes. So a
        broadcast accepted anywhere before the stop reaches this worker's clients before their 1012 close."""
        others = set(range(self.state.workers)) - {self.index}
        for dest in others:
            self._send(dest, shm.KIND_CONTROL, b"", b"%s %d" % (DRAINED, self.index))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (not others <= self._drained or self._outbox) and loop.time() < deadline:
            self._drain()
            await asyncio.sleep(0.005)
        self._drain()
        if not others <= self._drained:
            log.info("drained without word from worker(s) %s within %.1f s", sorted(others - self._drained), timeout)

    @property
    def waiting(self) -> int:
        """Records held back for full inboxes (0: everything published has reached the other workers)."""
        return sum(len(box) for box in self._outbox.values())

    def _give_up(self) -> None:
        for dest, box in self._outbox.items():
            self._drop(dest, len(box), "this worker stops")
        self._outbox.clear()
        self._outbox_bytes = 0

    def _drop(self, dest: int, n: int, why: str) -> None:
        if n <= 0:
            return
        self.state.count_drops(dest, n)
        _rate_log.warning("ring-drop", "dropped %d record(s) for worker %d: %s", n, dest, why)

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
        for dest in range(self.state.workers):
            if dest != self.index:
                self._send(dest, shm.KIND_CONTROL, key, b"%s %d" % (CLAIM, self.index))
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
            self._send(int(owner), KIND_AJAX_HANDOFF, key, _frame(flags, part))

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
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._offer()
        if self._retry is not None:  # still no room: what waits is lost with this worker, counted
            self._retry.cancel()
            self._retry = None
            self._give_up()
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
            if kind == KIND_PART:
                producer, flags, kind = _PART.unpack_from(payload)
                parts = self._parts.setdefault(producer, [])
                if flags & PART_FIRST:
                    parts.clear()  # what a dead producer left unfinished
                parts.append(payload[_PART.size:])
                if not flags & PART_LAST:
                    return
                payload = b"".join(parts)
                parts.clear()
            if kind == shm.KIND_CONTROL:
                if payload.startswith(CLAIM):
                    self._on_claim(key, payload)
                elif payload.startswith(DRAINED):
                    self._drained.add(int(payload[len(DRAINED):]))
                elif key[:1] and key[0] not in _NOT_UIDS and self._on_uid_left is not None:
                    text = payload[len(UIDPORT_CLOSE) + 1:] if key[:1] == LONG_PREFIX else key
                    self._on_uid_left(edn.loads(text))
                return
            if kind == KIND_AJAX_HANDOFF:
                self._on_handoff(key, payload)
                return
            if kind == KIND_CLOSE:
                if self._core is not None:
                    self._core.close_uid_here(edn.loads(payload))
                return
            uids: Recipients | None = None
            if kind & TO_UIDS:
                texts, payload = _unframe_uids(payload)
                uids = Recipients(edn.loads(text) for text in texts)
                kind &= ~TO_UIDS
            transport, binary = _BY_KIND[kind]
            if self._on_batch is not None:
                self._on_batch(transport, uids, payload if binary else payload.decode())
        except Exception as e:  # one bad record must not stop the worker's inbox
            counters().send_errors += 1
            _rate_log.warning("inbox", "dropped an unreadable inbox record (kind %d): %r", kind, e, exc_info=e)
