"""This worker's view of the other nodes' presence: which uids they hold, on which transports.

Loaded from a snapshot (``SNAPSHOT_LUA``'s reply) on connect, then kept current by the change messages of the
presence channel; changes older than the snapshot are skipped by their sequence number. It answers
``connected_uids`` and ``send``'s "is the uid anywhere?" locally, without a round trip to Redis.
"""

from __future__ import annotations

from typing import Any

from ... import edn
from ...protocol.backplane import Transport, View
from .wire import MASKS, uid_key


class RemoteView:
    """The other nodes' presence: uid EDN -> {member: transport mask}, the members of ``node`` excluded."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._view: dict[bytes, dict[str, int]] = {}
        self._values: dict[bytes, Any] = {}
        self._by_member: dict[str, set[bytes]] = {}
        self._snap_seq = 0
        self._uids: dict[View, frozenset[Any]] = {}  # uids() answers, until the view changes

    def __bool__(self) -> bool:
        return bool(self._view)

    def remote(self, uid: Any, transport: Transport) -> bool:
        """Whether another node holds a client of ``uid`` on ``transport``."""
        if not self._view:
            return False
        entry = self._view.get(uid_key(uid))
        bit = MASKS[transport]
        return entry is not None and any(mask & bit for mask in entry.values())

    def remote_any(self, transport: Transport) -> bool:
        """Whether another node holds any client on ``transport``."""
        bit = MASKS[transport]
        return any(mask & bit for entry in self._view.values() for mask in entry.values())

    def connected(self, uid: Any) -> bool:
        return bool(self._view) and uid_key(uid) in self._view

    def uids(self, view: View) -> frozenset[Any]:
        """The uids other nodes hold on ``view``'s transports."""
        uids = self._uids.get(view)
        if uids is None:
            bit = MASKS[view]
            uids = frozenset(self._values[k] for k, entry in self._view.items() if any(m & bit for m in entry.values()))
            self._uids[view] = uids
        return uids

    def clear(self) -> None:
        self._uids.clear()
        self._view.clear()
        self._values.clear()
        self._by_member.clear()

    def own(self, member: str) -> bool:
        """Whether ``member`` (``<node id>|<worker index>``) is a worker of this node."""
        return member.rpartition("|")[0] == self.node

    def load(self, reply: list[Any]) -> None:
        """Replace the view with a snapshot: ``SNAPSHOT_LUA``'s ``[seq, member, [uid, mask, ...], ...]``."""
        view: dict[bytes, dict[str, int]] = {}
        by_member: dict[str, set[bytes]] = {}
        for i in range(1, len(reply), 2):
            member = reply[i].decode()
            if self.own(member):
                continue
            flat = reply[i + 1]
            uids = by_member.setdefault(member, set())
            for j in range(0, len(flat), 2):
                view.setdefault(flat[j], {})[member] = int(flat[j + 1])
                uids.add(flat[j])
        self._snap_seq = int(reply[0])
        self._uids.clear()
        self._view, self._by_member = view, by_member
        self._values = {k: self._values[k] if k in self._values else edn.loads(k.decode()) for k in view}

    def apply(self, data: bytes) -> bool:
        """Apply one change message; True when the whole view must be reloaded (a member re-registered)."""
        seq_b, member_b, mask_b, key = data.split(b" ", 3)
        if int(seq_b) <= self._snap_seq:
            return False
        member = member_b.decode()
        if self.own(member):
            return False
        if mask_b == b"R":
            return True
        self._uids.clear()
        if mask_b == b"-":
            for key in self._by_member.pop(member, set()):
                self._forget(key, member)
            return False
        mask = int(mask_b)
        if mask:
            self._view.setdefault(key, {})[member] = mask
            self._by_member.setdefault(member, set()).add(key)
            if key not in self._values:
                self._values[key] = edn.loads(key.decode())
        else:
            self._by_member.get(member, set()).discard(key)
            self._forget(key, member)
        return False

    def _forget(self, key: bytes, member: str) -> None:
        entry = self._view.get(key)
        if entry is not None:
            entry.pop(member, None)
            if not entry:
                del self._view[key]
                self._values.pop(key, None)
