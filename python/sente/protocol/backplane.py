"""The seam between one server core and the rest of the cluster: presence, and batches for remote clients.

A :class:`ServerCore` owns the connections of its own process. Whether a uid is connected somewhere,
and whether ``:chsk/uidport-open``/``close`` is due, is a cluster-wide question; and a flushed batch must
also reach the uid's connections in other workers (shared memory) or on other nodes (Redis). The core
asks and tells a :class:`Backplane`; what crosses it is always an already-packed batch, never events to
re-encode. :class:`LocalBackplane` is the single-process answer: presence counted here, nothing remote.

Ajax clients without sticky sessions: consecutive requests of one Ajax client may reach different processes.
The backplane keeps a cluster-wide registry of ``[uid client-id]`` pairs (``client_join``/``client_leave``/
``client_known``), so a poll reaching a process that never saw the client is held, not re-handshaken. The
process that attaches a poll *claims* the client (``claim_poll``); every other process holding a registration
of it answers the claim through the core (:meth:`CorePeer.ajax_claimed_elsewhere`): it stops holding batches
for the client and hands the ones it holds to the claimant (``hand_off``), which delivers them
(:meth:`CorePeer.ajax_handoff`) before anything newer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

Transport = Literal["ws", "ajax"]
View = Literal["ws", "ajax", "any"]


class Recipients(tuple[Any, ...]):
    """The uids a batch from another process is for, when it names several (what ``publish_to`` sent)."""

    __slots__ = ()


class CorePeer(Protocol):
    """What a backplane calls on its core: other processes' presence decisions, closes, Ajax claims and handoffs."""

    on_output: Any
    """The core's wake-up (set by the transport layer): call it after an entry point queued actions."""

    def uid_joined_elsewhere(self, uid: Any) -> None:
        """The cluster decided elsewhere that ``uid`` is new to it: fire ``:chsk/uidport-open`` here."""
        ...

    def uid_left_elsewhere(self, uid: Any) -> None:
        """The cluster decided elsewhere that ``uid`` left it: fire ``:chsk/uidport-close`` here."""
        ...

    def close_uid_here(self, uid: Any) -> None:
        """Another process handled ``[:chsk/close]`` for ``uid``: close its connections in this process."""
        ...

    def ajax_claimed_elsewhere(self, uid: Any, client_id: str, owner: Any, now: float) -> None:
        """Process ``owner`` attached a poll of this client: stop holding its batches, hand them to ``owner``."""
        ...

    def ajax_handoff(
        self, uid: Any, client_id: str, batches: list[str | bytes], now: float, final: bool = True
    ) -> None:
        """Batches another process held for this client (``final``: that process's answer to our claim)."""
        ...


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

    def publish_to(self, transport: Transport, uids: list[Any], data: str | bytes) -> None:
        """Send one packed batch to the other processes' clients of each of ``uids`` (all of them known to be
        held elsewhere, see :meth:`remote`): one message per batch, not one per uid."""
        ...

    def publish_close(self, uid: Any) -> None:
        """Sente's ``[:chsk/close]`` for ``uid``: the other processes close its connections too."""
        ...

    def bind(self, core: CorePeer) -> None:
        """The core this backplane serves (claims and handoffs from other processes are handed to it)."""
        ...

    def client_join(self, uid: Any, client_id: str) -> None:
        """An Ajax client ``[uid client-id]`` is registered in this process."""
        ...

    def client_leave(self, uid: Any, client_id: str) -> None:
        """This process's registration of the Ajax client is gone."""
        ...

    def client_known(self, uid: Any, client_id: str) -> bool:
        """Whether some process of the cluster has the Ajax client registered (handshook and not expired)."""
        ...

    def claim_poll(self, uid: Any, client_id: str) -> int:
        """This process attached a poll of the client: tell the others. How many handoffs to wait for (0: none)."""
        ...

    def hand_off(self, uid: Any, client_id: str, owner: Any, batches: list[str | bytes], final: bool = True) -> None:
        """Send the batches held here for the client to ``owner`` (the claimant), in order.

        ``final``: this is the answer to ``owner``'s claim (else batches passed on after the claim was answered).
        """
        ...


class LocalBackplane:
    """One process is the whole cluster: presence is counted here and nothing is remote.

    ``uids`` answers with one frozenset per view, built when first asked after a uid joined or left, so an app
    pushing to ``connected_uids.any`` on every event does not copy the uids each time.
    """

    def __init__(self) -> None:
        self._counts: dict[Transport, dict[Any, int]] = {"ws": {}, "ajax": {}}
        self._clients: set[tuple[Any, str]] = set()
        self._views: dict[View, frozenset[Any]] = {}

    def connected(self, uid: Any) -> bool:
        return uid in self._counts["ws"] or uid in self._counts["ajax"]

    def join(self, uid: Any, transport: Transport) -> bool:
        new = not self.connected(uid)
        table = self._counts[transport]
        n = table.get(uid, 0)
        table[uid] = n + 1
        if not n:
            self._changed(transport)
        return new

    def leave(self, uid: Any, transport: Transport) -> bool:
        table = self._counts[transport]
        n = table.get(uid, 0) - 1
        if n > 0:
            table[uid] = n
        elif table.pop(uid, None) is not None:
            self._changed(transport)
        return not self.connected(uid)

    def _changed(self, transport: Transport) -> None:
        """A uid joined or left ``transport``: its view and "any" are built again when next asked."""
        self._views.pop(transport, None)
        self._views.pop("any", None)

    def uids(self, view: View) -> frozenset[Any]:
        uids = self._views.get(view)
        if uids is None:
            if view == "any":
                uids = frozenset(self._counts["ws"].keys() | self._counts["ajax"].keys())
            else:
                uids = frozenset(self._counts[view])
            self._views[view] = uids
        return uids

    def remote(self, uid: Any, transport: Transport) -> bool:
        return False

    def remote_any(self, transport: Transport) -> bool:
        return False

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        pass

    def publish_to(self, transport: Transport, uids: list[Any], data: str | bytes) -> None:
        pass

    def publish_close(self, uid: Any) -> None:
        pass

    def bind(self, core: CorePeer) -> None:
        pass

    def client_join(self, uid: Any, client_id: str) -> None:
        self._clients.add((uid, client_id))

    def client_leave(self, uid: Any, client_id: str) -> None:
        self._clients.discard((uid, client_id))

    def client_known(self, uid: Any, client_id: str) -> bool:
        return (uid, client_id) in self._clients

    def claim_poll(self, uid: Any, client_id: str) -> int:
        return 0

    def hand_off(self, uid: Any, client_id: str, owner: Any, batches: list[str | bytes], final: bool = True) -> None:
        pass


# ---------------------------------------------------------------------- other nodes, by URL

JoinRemote = Callable[[Backplane | None, str], Backplane]
_join_remote: JoinRemote | None = None


def install_join_remote(join: JoinRemote) -> None:
    """Say how a server joins other nodes by URL (``ChannelSocketServer(redis_url=...)``).

    The cluster layer knows how (:func:`sente.cluster.composite.with_redis`); ``import sente`` installs it here, so
    the server asks this inner seam instead of importing the layer around it.
    """
    global _join_remote
    _join_remote = join


def join_remote(backplane: Backplane | None, url: str) -> Backplane:
    """``backplane`` (None: this process alone) joined to the other nodes at ``url``, as one backplane."""
    if _join_remote is None:
        raise RuntimeError("no cluster layer installed to join other nodes by URL: import sente.cluster.composite "
                           "and call sente.protocol.backplane.install_join_remote(with_redis)")
    return _join_remote(backplane, url)
