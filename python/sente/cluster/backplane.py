"""The shared-memory backplane: how one worker's server core reaches the broker's other workers.

Presence lives in the shared uid registry of :mod:`csente.shm` (keys are the uids printed as EDN, so any
uid Sente allows works, up to the registry's key length); every local client registration is one
``uid_connect``/``uid_disconnect``, and the registry says when a uid enters or leaves the whole broker,
so uidport events fire once. A flushed batch is published once into every other worker's inbox
(``publish_all`` copies bytes, nothing is re-encoded); each worker drains its inbox when its wake-up
FIFO turns readable and writes the batches to its own clients of that uid.

Record kinds: one per transport and frame type (text or binary), for a uid (key = the uid's EDN) or a
broadcast (empty key); and the supervisor's control record ``CONTROL_UID_LEFT`` (key = uid EDN) for uids
that left the broker when a dead worker was reclaimed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from csente import shm

from .. import edn
from ..protocol.backplane import Transport, View

log = logging.getLogger("sente.cluster")

KIND_WS_TEXT, KIND_WS_BINARY, KIND_AJAX_TEXT, KIND_AJAX_BINARY = 1, 2, 3, 4
CONTROL_UID_LEFT = shm.KIND_CONTROL
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


class ShmBackplane:
    """A :class:`~sente.protocol.backplane.Backplane` over one worker's attachment to the broker's shared memory."""

    def __init__(self, state: shm.SharedState) -> None:
        if state.worker_index is None:
            raise ValueError("the backplane needs a worker's attachment (SharedState.attach(name, index))")
        self.state = state
        self._local: dict[tuple[Transport, Any], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_batch: OnBatch | None = None
        self._on_uid_left: OnUidLeft | None = None

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
        return frozenset(edn.loads(key) for key in self.state.connected_uids(_SHM_TRANSPORT[view]))

    def connected(self, uid: Any) -> bool:
        return self.state.holds(uid_key(uid))

    def remote(self, uid: Any, transport: Transport) -> bool:
        ws, ajax = self.state.uid_counts(uid_key(uid))
        total = ws if transport == "ws" else ajax
        return total > self._local.get((transport, uid), 0)

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
            if kind == CONTROL_UID_LEFT:
                if self._on_uid_left is not None:
                    self._on_uid_left(edn.loads(key))
                return
            transport, binary = _BY_KIND[kind]
            uid = edn.loads(key) if key else None
            if self._on_batch is not None:
                self._on_batch(transport, uid, payload if binary else payload.decode())
        except Exception:  # one bad record must not stop the worker's inbox
            log.exception("dropped an unreadable inbox record (kind %d)", kind)
