"""One :class:`~sente.protocol.backplane.Backplane` made of this node's (shared memory, or this process alone)
and the other nodes' (:class:`~sente.cluster.redis.RedisLink`).

A server core sees one backplane, as before. Presence is the union of the two views (``connected_uids`` and what
``send`` answers). A flushed batch goes to the node's other workers through ``local`` when they hold the uid, and
through Redis while it is up whenever another node holds it or this node does not: the uid may have connected on
another node a moment ago, before the view heard of it, and every worker listens to every uid's channel from the
moment it serves (so a push sent after a handshake went out on any node reaches it). Broadcasts go through Redis
whenever it is up. Each batch is packed once by the core.

``uidport-open``/``close`` are decided by Redis while it is reachable (an atomic script per change, so once for
the whole cluster; the answer comes back a moment later and the event fires then, on the worker that made the
change), and by the node's own view while it is not. ``[:chsk/close]`` reaches every node: this node's workers
through ``local``, the others through a close message on the uid's Redis slot channel, which each worker holding
the uid answers by closing its own connections. Like a batch, it is lost while Redis is down.

Ajax clients without sticky sessions are a node matter: the client registry, poll claims and handoffs go to
``local`` only, so across machines a load balancer must keep an Ajax client on one node (any worker of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol.backplane import Backplane, CorePeer, LocalBackplane, Transport, View
from .redis import MASKS, RedisLink

OnBatch = Callable[[Transport, Any, "str | bytes"], None]


class CompositeBackplane:
    """``local`` (this node) plus ``link`` (the other nodes, through Redis), as one backplane."""

    def __init__(self, local: Backplane, link: RedisLink) -> None:
        self.local, self.link = local, link
        self._unions: dict[View, tuple[frozenset[Any], frozenset[Any], frozenset[Any]]] = {}  # (local, remote, union)
        self._counts: dict[tuple[Transport, Any], int] = {}  # this worker's clients
        self._core: Any = None
        self._on_uid_left: Callable[[Any], None] | None = None

    # ------------------------------------------------------------------ presence

    def _mask(self, uid: Any) -> int:
        return sum(MASKS[t] for t in ("ws", "ajax") if (t, uid) in self._counts)

    def join(self, uid: Any, transport: Transport) -> bool:
        new_to_node = self.local.join(uid, transport)
        n = self._counts.get((transport, uid), 0)
        self._counts[(transport, uid)] = n + 1
        if n == 0 and self.link.set_presence(uid, self._mask(uid), new_to_node):
            return False  # Redis decides; the open fires when it answers
        return new_to_node

    def leave(self, uid: Any, transport: Transport) -> bool:
        gone_from_node = self.local.leave(uid, transport)
        n = self._counts.get((transport, uid), 0) - 1
        if n > 0:
            self._counts[(transport, uid)] = n
            return gone_from_node
        self._counts.pop((transport, uid), None)
        if self.link.set_presence(uid, self._mask(uid), gone_from_node):
            return False
        return gone_from_node

    def uids(self, view: View) -> frozenset[Any]:
        """This node's uids and the other nodes': the union is made again only when one side's (cached) set is
        a new one."""
        local, remote = self.local.uids(view), self.link.uids(view)
        if not remote:
            return local
        cached = self._unions.get(view)
        if cached is None or cached[0] is not local or cached[1] is not remote:
            cached = self._unions[view] = (local, remote, local | remote)
        return cached[2]

    def connected(self, uid: Any) -> bool:
        return self.local.connected(uid) or self.link.connected(uid)

    def remote(self, uid: Any, transport: Transport) -> bool:
        return self.local.remote(uid, transport) or self._to_link(uid, transport)

    def known_remote(self, uid: Any, transport: Transport) -> bool:
        """:meth:`remote` without the guess: another worker or node is known to hold ``uid`` (``send``'s answer)."""
        return self.local.remote(uid, transport) or self.link.remote(uid, transport)

    def _to_link(self, uid: Any, transport: Transport) -> bool:
        """Whether a batch for ``uid`` goes to the other nodes: one holds it, or (Redis up) this node does not."""
        return self.link.active and (self.link.remote(uid, transport) or not self.local.connected(uid))

    def remote_any(self, transport: Transport) -> bool:
        return self.local.remote_any(transport) or self.link.active

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        if uid is None:
            if self.local.remote_any(transport):
                self.local.publish(transport, None, data)
            self.link.publish(transport, None, data)  # while Redis is down: counted as dropped
            return
        if self.local.remote(uid, transport):
            self.local.publish(transport, uid, data)
        if self._to_link(uid, transport):
            self.link.publish(transport, uid, data)

    def publish_to(self, transport: Transport, uids: list[Any], data: str | bytes) -> None:
        here = [uid for uid in uids if self.local.remote(uid, transport)]
        if here:
            self.local.publish_to(transport, here, data)
        there = [uid for uid in uids if self.link.remote(uid, transport)]
        if there:
            self.link.publish_to(transport, there, data)

    # ------------------------------------------------------------------ Ajax clients: this node's affair

    def publish_close(self, uid: Any) -> None:
        """``[:chsk/close]``: this node's other workers through ``local``; other nodes through Redis (a close
        message on the uid's slot channel, which every worker holding the uid subscribes to: each closes its own)."""
        self.local.publish_close(uid)
        self.link.publish_close(uid)

    def bind(self, core: CorePeer) -> None:
        self._core = core
        self.local.bind(core)

    def client_join(self, uid: Any, client_id: str) -> None:
        self.local.client_join(uid, client_id)

    def client_leave(self, uid: Any, client_id: str) -> None:
        self.local.client_leave(uid, client_id)

    def client_known(self, uid: Any, client_id: str) -> bool:
        return self.local.client_known(uid, client_id)

    def claim_poll(self, uid: Any, client_id: str) -> int:
        return self.local.claim_poll(uid, client_id)

    def hand_off(self, uid: Any, client_id: str, owner: Any, batches: list[str | bytes], final: bool = True) -> None:
        self.local.hand_off(uid, client_id, owner, batches, final)

    # ------------------------------------------------------------------ the inboxes (ClusterLink)

    def start(self, on_batch: OnBatch, on_uid_left: Callable[[Any], None]) -> None:
        self._on_uid_left = on_uid_left
        start = getattr(self.local, "start", None)
        if start is not None:
            start(on_batch, self._local_uid_left)
        self.link.start(on_batch, self._uid_opened, on_uid_left, self._close_here)

    def stop(self) -> None:
        stop = getattr(self.local, "stop", None)
        if stop is not None:
            stop()
        self.link.stop()

    async def settle(self, timeout: float) -> None:
        """This node's part of a drain (see :meth:`~sente.cluster.backplane.ShmBackplane.settle`)."""
        settle = getattr(self.local, "settle", None)
        if settle is not None:
            await settle(timeout)

    async def aclose(self) -> None:
        """Withdraw this worker's presence from Redis cleanly (then :meth:`stop`)."""
        await self.link.aclose()

    def _local_uid_left(self, uid: Any) -> None:
        """The supervisor reclaimed a dead worker's uid. With Redis up, Redis decides: the replacement worker's
        registration (or the TTL sweep) reports whether the uid left the whole cluster."""
        if not self.link.active and self._on_uid_left is not None:
            self._on_uid_left(uid)

    def _close_here(self, uid: Any) -> None:
        """Another node's ``[:chsk/close]``: this worker's connections of ``uid`` (not forwarded: every worker of
        this node holding the uid received the message itself)."""
        if self._core is not None:
            self._core.close_uid_here(uid)

    def _uid_opened(self, uid: Any) -> None:
        core = self._core
        if core is None:
            return
        core.uid_joined_elsewhere(uid)


def with_redis(backplane: Backplane | None, redis_url: str) -> Backplane:
    """``backplane`` (None: this process alone) joined to the other nodes through Redis at ``redis_url``;
    one that already has a Redis link (a worker's, from ``sente serve --redis-url``) is kept as it is.

    What ``ChannelSocketServer(redis_url=...)`` does (``import sente`` installs it with
    :func:`~sente.protocol.backplane.install_join_remote`).
    """
    if backplane is not None and hasattr(backplane, "link"):
        return backplane
    return CompositeBackplane(backplane if backplane is not None else LocalBackplane(), RedisLink(redis_url))
