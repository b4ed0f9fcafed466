"""The seam between one server core and the rest of the cluster: presence, and batches for remote clients.

A :class:`ServerCore` owns the connections of its own process. Whether a uid is connected somewhere,
and whether ``:chsk/uidport-open``/``close`` is due, is a cluster-wide question; and a flushed batch must
also reach the uid's connections in other workers (shared memory) or on other nodes (Redis). The core
asks and tells a :class:`Backplane`; what crosses it is always an already-packed batch, never events to
re-encode. :class:`LocalBackplane` is the single-process answer: presence counted here, nothing remote.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

Transport = Literal["ws", "ajax"]
View = Literal["ws", "ajax", "any"]


class Backplane(Protocol):
    """What a server core needs from the cluster around it. All methods are synchronous and cheap."""

    def join(self, uid: Any, transport: Transport) -> bool:
        """A local client of ``uid`` on ``transport`` is registered; True when the uid is new to the cluster."""
        ...

    def leave(self, uid: Any, transport: Transport) -> bool:
        """A local client of ``uid`` went away; True when the uid has left the whole cluster."""
        ...

    def uids(self, view: View) -> frozenset[Any]:
        """The uids connected anywhere in the cluster, on one transport or any."""
        ...

    def connected(self, uid: Any) -> bool:
        """Whether ``uid`` is connected anywhere in the cluster (is in ``uids("any")``)."""
        ...

    def remote(self, uid: Any, transport: Transport) -> bool:
        """Whether some other process holds a client of ``uid`` on ``transport``."""
        ...

    def remote_any(self, transport: Transport) -> bool:
        """Whether some other process holds any client on ``transport`` (worth publishing a broadcast)."""
        ...

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        """Send a packed batch to the other processes: for ``uid``'s clients, or for every client when None."""
        ...


class LocalBackplane:
    """One process is the whole cluster: presence is counted here and nothing is remote."""

    def __init__(self) -> None:
        self._counts: dict[Transport, dict[Any, int]] = {"ws": {}, "ajax": {}}

    def connected(self, uid: Any) -> bool:
        return uid in self._counts["ws"] or uid in self._counts["ajax"]

    def join(self, uid: Any, transport: Transport) -> bool:
        new = not self.connected(uid)
        table = self._counts[transport]
        table[uid] = table.get(uid, 0) + 1
        return new

    def leave(self, uid: Any, transport: Transport) -> bool:
        table = self._counts[transport]
        n = table.get(uid, 0) - 1
        if n > 0:
            table[uid] = n
        else:
            table.pop(uid, None)
        return not self.connected(uid)

    def uids(self, view: View) -> frozenset[Any]:
        if view == "any":
            return frozenset(self._counts["ws"].keys() | self._counts["ajax"].keys())
        return frozenset(self._counts[view])

    def remote(self, uid: Any, transport: Transport) -> bool:
        return False

    def remote_any(self, transport: Transport) -> bool:
        return False

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        pass
