"""Several server cores as one server: presence and pushes across processes, through the backplane seam.

``Cluster`` stands in for shared memory or Redis: it counts presence per core and carries published
batches to the other cores, which the test hands to ``deliver_remote`` as a worker's ring reader would.
"""

from __future__ import annotations

from typing import Any

from csente.types import Keyword
from sente.packers import EdnPacker
from sente.protocol.backplane import Transport, View
from sente.protocol.config import ServerConfig
from sente.protocol.requests import Request
from sente.protocol.server import Dispatch, Respond, Send, ServerCore

K = Keyword


class Cluster:
    def __init__(self, n: int) -> None:
        self.counts: list[dict[tuple[Transport, Any], int]] = [{} for _ in range(n)]
        self.inboxes: list[list[tuple[Transport, Any, str | bytes]]] = [[] for _ in range(n)]
        self.cores = [ServerCore(EdnPacker(), ServerConfig(), Member(self, i)) for i in range(n)]

    def total(self, uid: Any, transports: tuple[Transport, ...] = ("ws", "ajax"), skip: int | None = None) -> int:
        return sum(c.get((t, uid), 0) for i, c in enumerate(self.counts) if i != skip for t in transports)

    def carry(self, now: float = 0) -> None:
        """Hand every published batch to its destination core."""
        for i, inbox in enumerate(self.inboxes):
            while inbox:
                self.cores[i].deliver_remote(*inbox.pop(0), now)


class Member:
    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster, self.index = cluster, index

    def join(self, uid: Any, transport: Transport) -> bool:
        new = self.cluster.total(uid) == 0
        counts = self.cluster.counts[self.index]
        counts[(transport, uid)] = counts.get((transport, uid), 0) + 1
        return new

    def leave(self, uid: Any, transport: Transport) -> bool:
        self.cluster.counts[self.index][(transport, uid)] -= 1
        return self.cluster.total(uid) == 0

    def uids(self, view: View) -> frozenset[Any]:
        views = ("ws", "ajax") if view == "any" else (view,)
        return frozenset(u for c in self.cluster.counts for (t, u), n in c.items() if n and t in views)

    def connected(self, uid: Any) -> bool:
        return self.cluster.total(uid) > 0

    def remote(self, uid: Any, transport: Transport) -> bool:
        return self.cluster.total(uid, (transport,), skip=self.index) > 0

    def remote_any(self, transport: Transport) -> bool:
        others = (c for i, c in enumerate(self.cluster.counts) if i != self.index)
        return any(n for c in others for (t, _), n in c.items() if t == transport)

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        for i, inbox in enumerate(self.cluster.inboxes):
            if i != self.index:
                inbox.append((transport, uid, data))


def request(uid: str, client_id: str, **params: str) -> Request:
    query = [("client-id", client_id), ("csrf-token", "t"), *params.items()]
    return Request("GET", "/chsk", query=query, session={"uid": uid, "csrf-token": "t"})


def open_ws(core: ServerCore, handle: str, uid: str, client_id: str) -> None:
    core.ws_open(handle, request(uid, client_id), 0)


def sent(core: ServerCore) -> list[tuple[tuple[Any, ...], str | bytes]]:
    return [(a.handles, a.data) for a in core.take_actions() if isinstance(a, Send)]


def system_events(core: ServerCore) -> list[Any]:
    return [a.msg.event for a in core.take_actions() if isinstance(a, Dispatch)]


def test_a_uid_on_two_workers_opens_and_closes_its_uidport_once():
    cluster = Cluster(2)
    a, b = cluster.cores
    open_ws(a, "A1", "alice", "tab1")
    open_ws(b, "B1", "alice", "tab2")
    assert system_events(a) == [[K("chsk/uidport-open"), "alice"]]
    assert system_events(b) == []
    a.ws_close("A1", 0)
    b.ws_close("B1", 100)
    a.tick(10_000)
    b.tick(10_000)
    assert system_events(a) == []
    assert system_events(b) == [[K("chsk/uidport-close"), "alice"]]


def test_connected_uids_are_cluster_wide():
    cluster = Cluster(2)
    a, b = cluster.cores
    open_ws(a, "A1", "alice", "c1")
    b.ajax_get("g1", request("bob", "c2", **{"handshake?": "1"}), 0)
    b.ajax_get("g2", request("bob", "c2"), 0)
    for core in (a, b):
        assert (core.ws_uids, core.ajax_uids, core.any_uids) == ({"alice"}, {"bob"}, {"alice", "bob"})


def test_a_push_from_any_worker_reaches_the_uid_on_the_other():
    cluster = Cluster(2)
    a, b = cluster.cores
    open_ws(b, "B1", "alice", "c1")
    sent(b)
    assert a.send("alice", [K("t/p"), 1], 0) is True
    a.tick(30)
    assert sent(a) == []
    cluster.carry()
    assert sent(b) == [(("B1",), "[[[:t/p 1]] nil]")]


def test_a_push_to_a_uid_nowhere_is_refused():
    cluster = Cluster(2)
    assert cluster.cores[0].send("nobody", [K("t/p"), 1], 0) is False


def test_a_broadcast_is_packed_once_and_reaches_every_worker_with_the_same_bytes():
    cluster = Cluster(3)
    a, b, c = cluster.cores
    open_ws(a, "A1", "alice", "c1")
    open_ws(b, "B1", "bob", "c2")
    open_ws(c, "C1", "carol", "c3")
    for core in cluster.cores:
        core.take_actions()
    a.broadcast([K("t/all"), {K("n"): 1}], 0)
    a.tick(30)
    cluster.carry()
    expected = "[[[:t/all {:n 1}]] nil]"
    assert sent(a) == [(("A1",), expected)]
    assert sent(b) == [(("B1",), expected)]
    assert sent(c) == [(("C1",), expected)]


def test_a_targeted_broadcast_reaches_only_its_uids_elsewhere():
    cluster = Cluster(2)
    a, b = cluster.cores
    open_ws(b, "B1", "bob", "c1")
    open_ws(b, "B2", "carol", "c2")
    b.take_actions()
    a.broadcast([K("t/x"), 1], 0, uids=["bob"])
    a.tick(30)
    cluster.carry()
    assert sent(b) == [(("B1",), "[[[:t/x 1]] nil]")]


def test_an_ajax_client_elsewhere_gets_the_batch_at_its_poll():
    cluster = Cluster(2)
    a, b = cluster.cores
    b.ajax_get("g1", request("bob", "c1", **{"handshake?": "1"}), 0)
    b.ajax_get("g2", request("bob", "c1"), 0)
    b.take_actions()
    a.send("bob", [K("t/p"), 2], 0)
    a.tick(100)
    cluster.carry(100)
    assert [(r.handle, r.response.body) for r in b.take_actions() if isinstance(r, Respond)] == [
        ("g2", "[[[:t/p 2]] nil]")
    ]


def test_pushes_from_one_worker_keep_their_order_on_another():
    cluster = Cluster(2)
    a, b = cluster.cores
    open_ws(b, "B1", "alice", "c1")
    b.take_actions()
    for i in range(3):
        a.send("alice", [K("t/p"), i], i * 40)
        a.tick(i * 40 + 30)
    cluster.carry()
    assert [d for _, d in sent(b)] == [f"[[[:t/p {i}]] nil]" for i in range(3)]
