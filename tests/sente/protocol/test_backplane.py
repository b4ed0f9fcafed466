"""Several server cores as one server: presence and pushes across processes, through the backplane seam.

``Cluster`` stands in for shared memory or Redis: it counts presence per core and carries published
batches to the other cores, which the test hands to ``deliver_remote`` as a worker's ring reader would.
It also keeps the cluster-wide registry of Ajax clients and carries poll claims and handoffs, so one Ajax
client can poll and post on any core, as behind SO_REUSEPORT without sticky sessions.
"""

from __future__ import annotations

from typing import Any

from csente.types import Keyword
from sente.packers import EdnPacker
from sente.protocol.backplane import Recipients, Transport, View
from sente.protocol.config import ServerConfig
from sente.protocol.requests import Request
from sente.protocol.server import HANDOFF_WAIT_MS, Close, Dispatch, Respond, Send, ServerCore

K = Keyword


class Cluster:
    def __init__(self, n: int) -> None:
        self.counts: list[dict[tuple[Transport, Any], int]] = [{} for _ in range(n)]
        self.clients: list[set[tuple[Any, str]]] = [set() for _ in range(n)]
        self.inboxes: list[list[tuple[Any, ...]]] = [[] for _ in range(n)]
        self.records = 0  # claims and handoffs carried so far
        self.cores = [ServerCore(EdnPacker(), ServerConfig(), Member(self, i)) for i in range(n)]

    def total(self, uid: Any, transports: tuple[Transport, ...] = ("ws", "ajax"), skip: int | None = None) -> int:
        return sum(c.get((t, uid), 0) for i, c in enumerate(self.counts) if i != skip for t in transports)

    def carry(self, now: float = 0) -> None:
        """Hand every published record to its destination core, until none is left (handoffs answer claims)."""
        while any(self.inboxes):
            for i, inbox in enumerate(self.inboxes):
                while inbox:
                    what, *args = inbox.pop(0)
                    core = self.cores[i]
                    if what == "batch":
                        core.deliver_remote(*args, now)
                    elif what == "close":
                        core.close_uid_here(*args)
                    elif what == "claim":
                        self.records += 1
                        core.ajax_claimed_elsewhere(*args, now)
                    else:
                        self.records += 1
                        uid, client_id, batches, final = args
                        core.ajax_handoff(uid, client_id, batches, now, final=final)


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
        if transport == "ajax":  # any Ajax registration elsewhere, polled or not (as ShmBackplane)
            return any(u == uid for i, c in enumerate(self.cluster.clients) if i != self.index for u, _ in c)
        return self.cluster.total(uid, (transport,), skip=self.index) > 0

    def remote_any(self, transport: Transport) -> bool:
        others = (c for i, c in enumerate(self.cluster.counts) if i != self.index)
        return any(n for c in others for (t, _), n in c.items() if t == transport)

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        for i, inbox in enumerate(self.cluster.inboxes):
            if i != self.index:
                inbox.append(("batch", transport, uid, data))

    def publish_to(self, transport: Transport, uids: list[Any], data: str | bytes) -> None:
        for i, inbox in enumerate(self.cluster.inboxes):
            if i != self.index:
                inbox.append(("batch", transport, Recipients(uids), data))

    def publish_close(self, uid: Any) -> None:
        for i, inbox in enumerate(self.cluster.inboxes):
            if i != self.index:
                inbox.append(("close", uid))

    def bind(self, core: Any) -> None:
        pass

    def client_join(self, uid: Any, client_id: str) -> None:
        self.cluster.clients[self.index].add((uid, client_id))

    def client_leave(self, uid: Any, client_id: str) -> None:
        self.cluster.clients[self.index].discard((uid, client_id))

    def client_known(self, uid: Any, client_id: str) -> bool:
        return any((uid, client_id) in c for c in self.cluster.clients)

    def claim_poll(self, uid: Any, client_id: str) -> int:
        holders = [i for i, c in enumerate(self.cluster.clients) if i != self.index and (uid, client_id) in c]
        if holders:
            for i, inbox in enumerate(self.cluster.inboxes):
                if i != self.index:
                    inbox.append(("claim", uid, client_id, self.index))
        return len(holders)

    def hand_off(self, uid: Any, client_id: str, owner: Any, batches: list[str | bytes], final: bool = True) -> None:
        self.cluster.inboxes[owner].append(("handoff", uid, client_id, list(batches), final))


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


# ---------------------------------------------------------------------- Ajax without sticky sessions


class Actions:
    """Every action of every core of a cluster, collected as the test goes (core index, action)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.log: list[tuple[int, Any]] = []

    def collect(self, now: float = 0) -> None:
        self.cluster.carry(now)
        for i, core in enumerate(self.cluster.cores):
            self.log.extend((i, a) for a in core.take_actions())

    def tick(self, now: float) -> None:
        for core in self.cluster.cores:
            core.tick(now)
        self.collect(now)

    def answers(self) -> dict[Any, tuple[int, str | bytes]]:
        """Responses by request handle: (core, body)."""
        return {a.handle: (i, a.response.body) for i, a in self.log if isinstance(a, Respond)}

    def events(self) -> list[tuple[int, Any]]:
        return [(i, a.msg.event) for i, a in self.log if isinstance(a, Dispatch)]


HANDSHAKE_BOB = '[[:chsk/handshake ["bob" nil nil]] nil]'


def handshake(run: Actions, core: int, handle: str, now: float = 0) -> None:
    run.cluster.cores[core].ajax_get(handle, request("bob", "c1", **{"handshake?": "1"}), now)
    run.collect(now)


def poll(run: Actions, core: int, handle: str, now: float = 0) -> None:
    run.cluster.cores[core].ajax_get(handle, request("bob", "c1"), now)
    run.collect(now)


def push(run: Actions, core: int, n: int, now: float) -> None:
    assert run.cluster.cores[core].send("bob", [K("t/p"), n], now, flush=True)
    run.collect(now)


def test_a_poll_on_another_worker_is_held_not_answered_with_a_handshake():
    run = Actions(Cluster(2))
    handshake(run, 0, "h")
    poll(run, 1, "g1")
    assert run.answers() == {"h": (0, HANDSHAKE_BOB)}  # g1 is held on worker 1
    run.tick(20_000)
    assert run.answers()["g1"] == (1, "[:chsk/timeout nil]")


def test_an_unknown_client_still_gets_a_handshake_on_any_worker():
    run = Actions(Cluster(2))
    poll(run, 1, "g1")
    assert run.answers() == {"g1": (1, HANDSHAKE_BOB)}


def test_a_push_between_polls_is_delivered_once_by_the_worker_of_the_next_poll():
    for sender in (0, 1):
        for next_poll in (0, 1):
            run = Actions(Cluster(2))
            handshake(run, 0, "h")
            poll(run, 1, "g1")
            push(run, sender, 1, 10)  # answers g1 on worker 1
            push(run, sender, 2, 20)  # between polls: held by worker 1
            poll(run, next_poll, "g2", 30)
            push(run, sender, 3, 40)
            poll(run, 1 - next_poll, "g3", 50)
            run.tick(20_000)
            answers = run.answers()
            assert answers["g1"] == (1, "[[[:t/p 1]] nil]")
            assert answers["g2"] == (next_poll, "[[[:t/p 2]] nil]"), (sender, next_poll)
            assert answers["g3"] == (1 - next_poll, "[[[:t/p 3]] nil]"), (sender, next_poll)
            assert len(answers) == 4  # the handshake and three polls: nothing twice, nothing stale


def test_a_push_to_a_client_that_only_handshook_elsewhere_waits_for_its_first_poll():
    for first_poll in (0, 1):
        run = Actions(Cluster(2))
        handshake(run, 0, "h")
        push(run, 1, 1, 10)  # the POST asking for it landed on the other worker (ajax-push-between-polls)
        assert run.cluster.cores[1].ajax_uids == frozenset()  # not connected before its first poll, as in Sente
        poll(run, first_poll, "g1", 400)
        assert run.answers()["g1"] == (first_poll, "[[[:t/p 1]] nil]")


def test_polls_ping_ponging_between_workers_keep_the_order_and_never_duplicate():
    run = Actions(Cluster(3))
    handshake(run, 0, "h")
    got: list[str | bytes] = []
    polls = 0

    def poll_until_held(worker: int, now: float) -> None:
        nonlocal polls
        while True:  # a poll takes one held batch at most: the client polls again at once, on the same worker
            polls += 1
            handle = f"g{polls}"
            poll(run, worker, handle, now)
            if handle not in run.answers():
                return
            got.append(run.answers()[handle][1])

    poll_until_held(0, 0)
    workers = [1, 2, 0, 0, 1, 2, 2, 1, 0, 1]
    now = 0.0
    for i, worker in enumerate(workers):
        push(run, i % 3, 2 * i, now + 1)  # answers the held poll
        push(run, (i + 1) % 3, 2 * i + 1, now + 2)  # the client is between polls: held
        got.append(run.answers()[f"g{polls}"][1])
        poll_until_held(worker, now + 3)
        now += 100
    run.tick(now + 20_000)
    assert got == [f"[[[:t/p {n}]] nil]" for n in range(2 * len(workers))]
    assert len(run.answers()) == polls + 1  # every poll answered once, the last one with a timeout
    assert run.cluster.records > 0


def test_a_batch_reaching_the_claimant_first_waits_behind_the_handed_off_ones():
    cluster = Cluster(2)
    run = Actions(cluster)
    a, b = cluster.cores
    handshake(run, 0, "h")
    poll(run, 0, "g1")
    a.send("bob", [K("t/p"), 1], 0, flush=True)  # answers g1 on worker 0
    a.send("bob", [K("t/p"), 2], 1, flush=True)  # held on worker 0
    run.collect(1)
    b.ajax_get("g2", request("bob", "c1"), 2)  # claims; worker 0 has not read the claim yet
    b.deliver_remote("ajax", "bob", "[[[:t/p 3]] nil]", 3)  # a newer batch reaches worker 1 first
    for core in cluster.cores:
        run.log.extend((0 if core is a else 1, x) for x in core.take_actions())
    assert "g2" not in run.answers()  # waits for worker 0's handoff
    run.collect(4)
    assert run.answers()["g2"] == (1, "[[[:t/p 2]] nil]")
    poll(run, 1, "g3", 5)
    assert run.answers()["g3"] == (1, "[[[:t/p 3]] nil]")


def test_a_missing_handoff_delays_delivery_by_at_most_the_handoff_wait():
    cluster = Cluster(2)
    run = Actions(cluster)
    handshake(run, 0, "h")
    poll(run, 0, "g1")
    run.collect()
    cluster.cores[1].ajax_get("g2", request("bob", "c1"), 10)
    cluster.inboxes[0].clear()  # the claim is lost (say worker 0 died)
    cluster.cores[1].deliver_remote("ajax", "bob", "[[[:t/p 1]] nil]", 20)
    run.collect(20)
    assert "g2" not in run.answers()
    run.tick(10 + HANDOFF_WAIT_MS)
    assert run.answers()["g2"] == (1, "[[[:t/p 1]] nil]")


def test_a_claim_answers_a_stale_poll_held_on_the_old_worker_with_a_timeout():
    run = Actions(Cluster(2))
    handshake(run, 0, "h")
    poll(run, 0, "g1")  # the client gave up on it (its XHR failed) and polls elsewhere
    poll(run, 1, "g2", 10)
    assert run.answers()["g1"] == (0, "[:chsk/timeout nil]")
    assert "g2" not in run.answers()


def test_an_ajax_client_on_two_workers_opens_and_closes_its_uidport_once():
    run = Actions(Cluster(2))
    handshake(run, 0, "h")
    poll(run, 0, "g1")
    poll(run, 1, "g2", 10)
    poll(run, 0, "g3", 20)
    for core in run.cluster.cores:
        assert core.ajax_uids == {"bob"}
    run.tick(20_020)  # g3 times out; the client stops polling
    run.tick(60_000)  # both registrations expire
    assert [e for e in run.events() if e[1][0] in (K("chsk/uidport-open"), K("chsk/uidport-close"))] == [
        (0, [K("chsk/uidport-open"), "bob"]),
        (0, [K("chsk/uidport-close"), "bob"]),
    ]
    for core in run.cluster.cores:
        assert core.ajax_uids == frozenset()
    assert run.cluster.clients == [set(), set()]


def test_ajax_membership_starts_at_the_first_poll_wherever_it_lands():
    run = Actions(Cluster(2))
    handshake(run, 0, "h")
    assert run.cluster.cores[1].ajax_uids == frozenset()
    poll(run, 1, "g1")
    assert run.events() == [(1, [K("chsk/uidport-open"), "bob"])]
    assert run.cluster.cores[0].ajax_uids == {"bob"}


def test_a_post_is_answered_by_the_worker_it_reaches():
    run = Actions(Cluster(2))
    handshake(run, 0, "h")
    post = Request("POST", "/chsk", form=[("client-id", "c1"), ("ppstr", "[[:t/e 1] 7]"), ("csrf-token", "t")],
                   session={"uid": "bob", "csrf-token": "t"})
    run.cluster.cores[1].ajax_post("p1", post, 5)
    run.collect(5)
    (msg,) = [a.msg for i, a in run.log if isinstance(a, Dispatch) and i == 1]
    assert msg.reply is not None and msg.reply("ok")
    run.collect(6)
    assert run.answers()["p1"] == (1, '["ok" nil]')


def test_the_local_backplane_keeps_the_single_process_rules():
    core = ServerCore(EdnPacker(), ServerConfig())
    core.ajax_get("h", request("bob", "c1", **{"handshake?": "1"}), 0)
    core.ajax_get("g1", request("bob", "c1"), 0)
    core.send("bob", [K("t/p"), 1], 1, flush=True)
    assert [(a.handle, a.response.body) for a in core.take_actions() if isinstance(a, Respond)] == [
        ("h", HANDSHAKE_BOB), ("g1", "[[[:t/p 1]] nil]"),
    ]


def test_chsk_close_sent_on_one_worker_closes_the_uid_on_every_worker():
    cluster = Cluster(2)
    a, b = cluster.cores
    open_ws(a, "A1", "alice", "tab1")
    open_ws(b, "B1", "alice", "tab2")
    for core in (a, b):
        core.take_actions()
    assert a.send("alice", [K("chsk/close")], 0) is True
    cluster.carry()
    assert [x for x in a.take_actions() if isinstance(x, Close)] == [Close("A1", 1000)]
    assert [x for x in b.take_actions() if isinstance(x, Close)] == [Close("B1", 1000)]
