"""The Redis backplane against a real redis-server (Debian's ``redis-server``, started here on a free port).

First the link itself, in one process: several :class:`CompositeBackplane` "nodes" on one event loop, each with a
:class:`LocalBackplane` and its own :class:`RedisLink` (presence, uidport events once for the cluster, batches
across nodes, a Redis restart, a node that stops heartbeating). Then whole nodes: two ``sente serve --workers 2
--redis-url`` clusters, WebSocket clients on each (:mod:`tests.sente.cluster.redis_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from sente import edn, metrics
from sente.cluster.composite import CompositeBackplane
from sente.cluster.redis import CLOSE, RedisLink, channel_for, decode_message, encode_message, uid_key
from sente.edn import Keyword
from sente.protocol.backplane import LocalBackplane, Recipients, Transport
from sente.publisher import Publisher
from tests.sente.cluster.test_supervisor import EDN, IO_TIMEOUT, Cluster, Conn, cluster, get_once, ws_client

START_S = 10.0
TTL_S = 1.0

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` on a free port, no persistence; :meth:`restart` brings it back on the same port, empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_S
        try:
            for _ in range(1000):
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                assert self.proc.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer PING"
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        if predicate():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------- the link, in one process


class FakeCore:
    """What a CompositeBackplane calls on its bound core (the uidport-open it decides)."""

    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events
        self.on_output: Callable[[], None] | None = None

    def uid_joined_elsewhere(self, uid: Any) -> None:
        self.events.append(("open", uid))

    def uid_left_elsewhere(self, uid: Any) -> None:
        self.events.append(("close", uid))

    def close_uid_here(self, uid: Any) -> None:
        self.events.append(("closed here", uid))

    def ajax_claimed_elsewhere(self, uid: Any, client_id: str, owner: Any, now: float) -> None:
        pass

    def ajax_handoff(self, uid: Any, client_id: str, batches: list[str | bytes], now: float,
                     final: bool = True) -> None:
        pass


class Node:
    """One node of the cluster as its core sees it: a composite backplane, what it delivered, its uidport events."""

    def __init__(self, url: str, name: str, prefix: str) -> None:
        self.link = RedisLink(url, node=name, member=f"{name}|0", prefix=prefix, ttl_s=TTL_S,
                              heartbeat_s=TTL_S / 5)
        self.bp = CompositeBackplane(LocalBackplane(), self.link)
        self.events: list[tuple[str, Any]] = []
        self.batches: list[tuple[Transport, Any, str | bytes]] = []
        self.bp.bind(FakeCore(self.events))
        self.bp.start(lambda t, u, d: self.batches.append((t, u, d)), lambda u: self.events.append(("close", u)))

    def join(self, uid: Any, transport: Transport = "ws") -> None:
        if self.bp.join(uid, transport):
            self.events.append(("open", uid))

    def leave(self, uid: Any, transport: Transport = "ws") -> None:
        if self.bp.leave(uid, transport):
            self.events.append(("close", uid))


@contextlib.asynccontextmanager
async def nodes(url: str, *names: str, prefix: str = "t") -> Any:
    made = [Node(url, name, f"{prefix}-{id(names)}") for name in names]
    try:
        await wait_until(lambda: all(n.link.active for n in made), what="links up")
        yield made
    finally:
        for n in made:
            await n.bp.aclose()
            n.bp.stop()


def all_events(ns: list[Node]) -> list[tuple[str, Any]]:
    return sorted((e for n in ns for e in n.events), key=repr)


def test_message_header_round_trips() -> None:
    for uid, data in ((b'"alice"', '[[[:a/b 1]] nil]'), (None, b"\x00bin"), (b"[1 2]", "")):
        node, seq, transports, key, back = decode_message(encode_message(b"n1", 7, 2, uid, data))
        assert (node, seq, transports, key, back) == (b"n1", 7, 2, uid, data)
    assert decode_message(encode_message(b"n1", 8, CLOSE, b'"bob"', b""))[2:] == (CLOSE, b'"bob"', b"")


def test_chsk_close_reaches_the_other_nodes_holding_the_uid(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b", "c") as (a, b, c):
            a.join("alice")
            c.join("carl")
            await wait_until(lambda: b.bp.connected("alice") and b.bp.connected("carl"), what="presence")
            b.bp.publish_close("alice")
            await wait_until(lambda: ("closed here", "alice") in a.events, what="a closes alice")
            await asyncio.sleep(0.1)
            assert ("closed here", "alice") not in b.events  # the sender's own node: through local only
            assert not any(e[0] == "closed here" for e in c.events)  # not subscribed to alice's slot
            assert not a.batches and not c.batches

    asyncio.run(go())


def test_presence_is_cluster_wide_and_uidport_fires_once(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b", "c") as (a, b, c):
            a.join("u1")
            await wait_until(lambda: ("open", "u1") in a.events, what="open on a")
            await wait_until(lambda: b.bp.connected("u1") and c.bp.connected("u1"), what="b and c see u1")
            assert b.bp.uids("ws") == frozenset({"u1"}) and b.bp.uids("ajax") == frozenset()
            assert b.link.remote("u1", "ws") and not b.link.remote("u1", "ajax")
            b.join("u1")
            c.join("u1", "ajax")
            a.join("u2", "ajax")
            await wait_until(lambda: a.bp.uids("ajax") == frozenset({"u1", "u2"}), what="a sees c's ajax u1")
            a.leave("u1")
            b.leave("u1")
            await asyncio.sleep(0.2)
            assert all_events([a, b, c]) == [("open", "u1"), ("open", "u2")]
            c.leave("u1", "ajax")
            await wait_until(lambda: ("close", "u1") in c.events, what="close on c, the last holder")
            await wait_until(lambda: not a.bp.connected("u1") and not b.bp.connected("u1"), what="u1 gone")
            assert all_events([a, b, c]) == [("close", "u1"), ("open", "u1"), ("open", "u2")]

    asyncio.run(go())


def test_connected_uids_of_the_cluster_are_one_set_until_presence_changes(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b") as (a, b):
            a.join("alice")
            b.join("bob")
            await wait_until(lambda: a.bp.uids("any") == {"alice", "bob"}, what="presence")
            first = a.bp.uids("any")
            assert a.bp.uids("any") is first  # read for every push: the same set while nothing changes
            b.join("carl")
            await wait_until(lambda: a.bp.uids("any") == {"alice", "bob", "carl"}, what="another node's change")
            a.leave("alice")
            assert a.bp.uids("any") == {"bob", "carl"}  # this node's change

    asyncio.run(go())


def test_uids_that_join_while_a_link_connects_are_registered(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a") as (a,):
            b = Node(redis_server.url, "b", a.link.prefix)
            try:
                for i in range(50):  # before, during and after b's registration
                    b.join(f"early{i}")
                    await asyncio.sleep(0.001)
                await wait_until(lambda: len(a.bp.uids("ws")) == 50, what="a sees all of b's uids")
            finally:
                await b.bp.aclose()
                b.bp.stop()

    asyncio.run(go())


def test_batches_cross_nodes_packed_once_and_skip_their_own_node(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b") as (a, b):
            a.join("alice")
            a.join("zed", "ajax")
            b.join("bob")
            await wait_until(lambda: b.bp.remote("alice", "ws") and a.bp.remote("bob", "ws"), what="presence")
            assert not b.link.remote("nobody", "ws") and not b.link.remote("alice", "ajax")  # the view
            # ...but a uid b does not hold may have connected elsewhere a moment ago: its batches go out anyway
            assert b.bp.remote("nobody", "ws") and not b.bp.remote("bob", "ws")
            b.bp.publish("ws", "alice", '[[[:t/x 1]] nil]')
            b.bp.publish("ws", "nobody", '[[[:t/x 0]] nil]')
            b.bp.publish("ws", "bob", '[[[:t/x 2]] nil]')  # b holds bob and no other node does: not sent
            assert b.bp.remote_any("ajax")
            b.bp.publish("ajax", None, b"\x01binary")
            await wait_until(lambda: len(a.batches) == 3, what="a's batches")
            assert a.batches == [("ws", "alice", '[[[:t/x 1]] nil]'), ("ws", "nobody", '[[[:t/x 0]] nil]'),
                                 ("ajax", None, b"\x01binary")]  # a's core keeps what is for its own clients
            assert b.batches == [] and b.link.stats.published == 3
            for i in range(100):  # one sender's batches arrive in order
                a.bp.publish("ws", "bob", f"[[[:t/n {i}]] nil]")
            await wait_until(lambda: len(b.batches) == 100, what="100 batches")
            assert [d for _, _, d in b.batches] == [f"[[[:t/n {i}]] nil]" for i in range(100)]

    asyncio.run(go())


def test_a_batch_for_many_uids_is_one_message_per_slot_channel(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b") as (a, b):
            uids: list[Any] = [f"u{i}" for i in range(300)] + ["with space", 7, Keyword("k/w")]
            for uid in uids:
                b.join(uid)
            await wait_until(lambda: all(a.link.remote(u, "ws") for u in uids), what="presence")
            a.bp.publish_to("ws", uids, "[[[:t/x 1]] nil]")

            def named() -> list[Any]:
                return [x for _, u, _ in b.batches for x in (u if isinstance(u, Recipients) else [u])]

            await wait_until(lambda: len(named()) == len(uids), what="every uid named")
            channels = {channel_for(a.link.prefix, uid_key(u), a.link.slots) for u in uids}
            assert len(b.batches) == len(channels) < len(uids)  # one message per slot channel, not per uid
            assert sorted(map(repr, named())) == sorted(map(repr, uids))
            assert all(t == "ws" and d == "[[[:t/x 1]] nil]" for t, _, d in b.batches)

    asyncio.run(go())


def test_redis_restart_keeps_local_service_drops_then_resumes(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b") as (a, b):
            a.join("alice")
            b.join("bob")
            await wait_until(lambda: b.bp.remote("alice", "ws"), what="presence")
            before = metrics.counters().backplane_dropped_outage
            ups: list[int] = []  # sente_backplane_up of this process (links a and b) while Redis restarts
            sampling = asyncio.get_running_loop().create_task(sample_outage(a, ups))
            await asyncio.to_thread(redis_server.restart)  # empty: no persistence
            await wait_until(lambda: not a.link.active or a.link.stats.failures > 0, what="a notices")
            # During the outage or right after it: local presence and uidport decisions keep working.
            a.join("carol")
            a.leave("carol")
            assert a.bp.connected("alice")
            await wait_until(lambda: a.link.active and b.link.active, timeout=15, what="reconnected")
            await wait_until(lambda: b.bp.remote("alice", "ws") and a.bp.remote("bob", "ws"), what="re-registered")
            assert a.link.stats.connects >= 2 and "down" in a.link.stats.state_changes
            b.bp.publish("ws", "alice", "after")
            await wait_until(lambda: ("ws", "alice", "after") in a.batches, what="delivery resumed")
            assert a.bp.uids("any") == frozenset({"alice", "bob"})
            await sampling
            text = metrics.exposition(metrics.registry_for(metrics.SenteCollector())).decode()
            assert 'sente_backplane_dropped_total{reason="outage"}' in text
            assert metrics.counters().backplane_dropped_outage >= before + 1  # the broadcast during the outage
            assert ups[0] == 1 and 0 in ups and ups[-1] == 1, ups
            assert "sente_backplane_up 1.0" in text

    asyncio.run(go())


async def sample_outage(a: Node, ups: list[int]) -> None:
    """Sample the exported up gauge every few ms until the outage is over; broadcast once from ``a`` while its
    link is down (a drop)."""
    broadcast = False
    for _ in range(3000):
        ups.append(metrics.sync_backplane())
        if not a.link.active and not broadcast:
            a.bp.publish("ws", None, "lost")
            broadcast = True
        if broadcast and ups[-1] == 1:
            return
        await asyncio.sleep(0.005)


def test_publishing_while_redis_is_down_drops_and_counts(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, node="x", max_queue=3)
    link.publish("ws", "alice", "data")  # not started: down
    assert link.stats.dropped_down == 1 and not link._queue
    link.state = "up"  # queue cap while up: the oldest go
    for i in range(5):
        link.publish("ws", None, f"{i}")
    assert link.stats.dropped_overflow == 2
    assert [decode_message(m)[4] for _, m in link._queue] == ["2", "3", "4"]


def test_a_node_that_stops_heartbeating_leaves_presence_after_the_ttl(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a", "b") as (a, b):
            b.join("bob")
            b.join("shared")
            a.join("shared")
            await wait_until(lambda: a.bp.connected("bob"), what="presence")
            b.link.stop()  # as if killed: no clean withdrawal
            started = time.monotonic()
            await wait_until(lambda: ("close", "bob") in a.events, timeout=TTL_S * 5, what="bob swept")
            assert time.monotonic() - started >= TTL_S * 0.5
            assert not a.bp.connected("bob") and a.bp.connected("shared")
            assert ("close", "shared") not in a.events

    asyncio.run(go())


# ---------------------------------------------------------------------- whole nodes: sente serve --redis-url

APP = "tests.sente.cluster.redis_app:app"


@dataclasses.dataclass
class TwoNodes:
    redis: RedisServer
    a: Cluster
    b: Cluster
    log: Path

    def uidports(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@contextlib.contextmanager
def redis_node(server: RedisServer) -> Iterator[Cluster]:
    with cluster(APP, "--redis-url", server.url, "--redis-ttl", str(TTL_S)) as c:
        yield c


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    log = tmp_path_factory.mktemp("redis") / "uidports.log"
    old = os.environ.get("REDIS_APP_LOG")
    os.environ["REDIS_APP_LOG"] = str(log)
    try:
        with running_redis() as server, redis_node(server) as a, redis_node(server) as b:
            yield TwoNodes(server, a, b, log)
    finally:
        if old is None:
            os.environ.pop("REDIS_APP_LOG", None)
        else:
            os.environ["REDIS_APP_LOG"] = old


async def http(port: int, target: str) -> str:
    status, _, body = await get_once(port, target)
    assert status == 200, body
    return body.decode()


async def uids_everywhere(port: int, tries: int = 8) -> set[Any]:
    """The cluster's uids as the node's workers see them (asks several times: connections spread over workers)."""
    views = [edn.loads(await http(port, "/uids")) for _ in range(tries)]
    return set.intersection(*map(set, views))


async def wait_uids(port: int, predicate: Callable[[set[Any]], bool], timeout: float = 10.0) -> set[Any]:
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        got = await uids_everywhere(port)
        if predicate(got):
            return got
        assert time.monotonic() < deadline, f"uids on port {port}: {got}"
        await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


async def next_push(conn: Conn, timeout: float = IO_TIMEOUT) -> list[Any]:
    """The events of the next pushed batch (pings skipped)."""
    deadline = time.monotonic() + timeout
    for _ in range(100):
        opcode, payload = await conn.frame(max(0.01, deadline - time.monotonic()))
        if opcode == 0x1:
            events = EDN.unpack_envelope(payload.decode()).payload
            if isinstance(events, list) and events and isinstance(events[0], list):
                return events
    raise AssertionError("no push")


def test_nodes_push_broadcast_and_share_presence(two_nodes: TwoNodes) -> None:
    async def go() -> None:
        a, b = two_nodes.a.port, two_nodes.b.port
        alice = [await ws_client(a, "alice")]  # on node A
        bob = await ws_client(b, "bob")
        try:
            await wait_uids(b, lambda u: {"alice", "bob"} <= u)
            await wait_uids(a, lambda u: {"alice", "bob"} <= u)
            await http(b, "/push?to=alice&x=1")  # sent on B, delivered on A
            for conn in alice:
                assert await next_push(conn) == [[Keyword("test/server-push"), 1]]
            await http(a, "/push?to=bob&x=2")
            assert await next_push(bob) == [[Keyword("test/server-push"), 2]]
            await http(a, "/broadcast?x=3")  # reaches clients on both nodes
            for conn in [*alice, bob]:
                assert await next_push(conn) == [[Keyword("test/broadcast"), 3]]
            with Publisher(two_nodes.redis.url) as pub:  # from outside any node
                pub.send("bob", ["test/published", 4])
            assert await next_push(bob) == [[Keyword("test/published"), 4]]
        finally:
            for conn in [*alice, bob]:
                conn.close()
        await wait_uids(a, lambda u: not {"alice", "bob"} & u)
        await wait_uids(b, lambda u: not {"alice", "bob"} & u)
        await asyncio.sleep(0.3)
        lines = two_nodes.uidports()
        for uid in ("alice", "bob"):  # once for the whole cluster, whichever worker of whichever node
            assert lines.count(f"open {uid}") == 1 and lines.count(f"close {uid}") == 1, lines

    asyncio.run(go())


def test_chsk_close_on_one_node_closes_the_uids_connections_on_every_node(two_nodes: TwoNodes) -> None:
    async def go() -> None:
        a, b = two_nodes.a.port, two_nodes.b.port
        dora: list[Conn] = []
        held: set[int] = set()
        for n in range(16):  # until both workers of node A hold one of dora's connections (one tab each)
            dora.append(await ws_tab(a, "dora", f"tab{n}"))
            held.add(await dora[-1].call([Keyword("test/worker"), None]))
            if held == {0, 1}:
                break
        eve = await ws_client(a, "eve")
        try:
            assert held == {0, 1}, held
            await wait_uids(b, lambda u: {"dora", "eve"} <= u)
            await http(b, "/close?to=dora")  # sent on node B, which holds none of dora's connections
            for conn in dora:
                assert await closed(conn), "a connection of dora stayed open"
            await http(b, "/push?to=eve&x=5")  # the other uid's connection is untouched
            assert await next_push(eve) == [[Keyword("test/server-push"), 5]]
            await wait_uids(b, lambda u: "dora" not in u)
        finally:
            for conn in [*dora, eve]:
                conn.close()

    asyncio.run(go())


async def ws_tab(port: int, uid: str, client_id: str) -> Conn:
    """A WebSocket of ``uid`` with its own client id (one browser tab; ``ws_client`` reuses one per uid)."""
    conn = await Conn.open(port)
    handshake = await conn.upgrade(f"/chsk?{urlencode({'client-id': client_id, 'uid': uid})}", {})
    assert EDN.unpack_envelope(handshake.decode()).payload[0] == Keyword("chsk/handshake")
    return conn


async def closed(conn: Conn, timeout: float = IO_TIMEOUT) -> bool:
    """Whether the server closes the WebSocket (a close frame or the end of the stream) within ``timeout``."""
    deadline = time.monotonic() + timeout
    for _ in range(100):
        try:
            opcode, _ = await conn.frame(max(0.01, deadline - time.monotonic()))
        except (asyncio.IncompleteReadError, ConnectionError):
            return True
        except TimeoutError:
            return False
        if opcode == 0x8:
            return True
    return False


def test_redis_restart_during_broadcasts(two_nodes: TwoNodes) -> None:
    async def go() -> None:
        a, b = two_nodes.a.port, two_nodes.b.port
        ann, ben = await ws_client(a, "ann"), await ws_client(b, "ben")
        try:
            await wait_uids(a, lambda u: {"ann", "ben"} <= u)
            await asyncio.to_thread(two_nodes.redis.stop)
            for i in range(5):  # Redis away: each node still serves its own clients, nothing crashes
                await http(a, f"/broadcast?x={i}")
                assert await next_push(ann) == [[Keyword("test/broadcast"), i]]
            await wait_uids(a, lambda u: "ben" not in u and "ann" in u)  # the local view
            await asyncio.to_thread(two_nodes.redis.start)  # empty: the nodes re-register
            await wait_uids(a, lambda u: {"ann", "ben"} <= u, timeout=20)
            await wait_uids(b, lambda u: {"ann", "ben"} <= u, timeout=20)
            await http(b, "/broadcast?x=9")
            assert await next_push(ann) == [[Keyword("test/broadcast"), 9]]
            assert await next_push(ben) == [[Keyword("test/broadcast"), 9]]
        finally:
            ann.close()
            ben.close()
        assert "Traceback" not in two_nodes.a.log() + two_nodes.b.log()

    asyncio.run(go())


def test_a_killed_node_leaves_presence_after_the_ttl(two_nodes: TwoNodes) -> None:
    async def go(c: Cluster) -> None:
        carol = await ws_client(c.port, "carol")
        await wait_uids(two_nodes.a.port, lambda u: "carol" in u)
        c.note_workers()
        c.proc.kill()
        for pid in c.worker_pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        await wait_uids(two_nodes.a.port, lambda u: "carol" not in u, timeout=TTL_S * 10)
        assert time.monotonic() - started >= TTL_S * 0.5
        carol.close()
        await asyncio.sleep(0.3)
        assert two_nodes.uidports().count("close carol") == 1

    with redis_node(two_nodes.redis) as c:
        asyncio.run(go(c))


def test_an_outage_is_logged_once_not_once_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", node="lonely")  # nothing listens there
        link.start(lambda *a: None, lambda uid: None, lambda uid: None)
        try:
            await wait_until(lambda: link.stats.failures >= 3, timeout=10, what="three failed attempts")
        finally:
            link.stop()

    with caplog.at_level(logging.DEBUG, logger="sente.cluster.redis"):
        asyncio.run(go())
    downs = [r for r in caplog.records if r.levelno == logging.WARNING and "Redis backplane down" in r.getMessage()]
    assert len(downs) == 1, [r.getMessage() for r in downs]


def test_a_push_from_another_node_right_after_the_handshake_is_delivered(two_nodes: TwoNodes) -> None:
    """100 times: a client gets its handshake on A, B pushes to its uid at once (0 ms): every push arrives."""

    async def go() -> None:
        a, b = two_nodes.a.port, two_nodes.b.port
        tag = os.urandom(3).hex()
        lost: list[int] = []
        for i in range(100):
            conn = await ws_client(a, f"fresh-{tag}-{i}")  # returns once the handshake has been read
            try:
                await http(b, f"/push?to=fresh-{tag}-{i}&x={i}")
                try:
                    assert await next_push(conn) == [[Keyword("test/server-push"), i]]  # late is not lost
                except (AssertionError, TimeoutError):
                    lost.append(i)
            finally:
                conn.close()
        assert lost == [], f"lost {len(lost)} of 100: {lost}"

    asyncio.run(go())


def test_a_push_from_another_node_right_after_an_ajax_handshake_is_delivered_by_the_next_poll(
        two_nodes: TwoNodes) -> None:
    async def go() -> None:
        a, b = two_nodes.a.port, two_nodes.b.port
        tag = os.urandom(3).hex()
        for i in range(20):
            query = urlencode({"client-id": f"ajax-{tag}-{i}", "uid": f"ajax-{tag}-{i}"})
            status, _, body = await get_once(a, f"/chsk?{query}&handshake?=true")
            assert status == 200 and b"chsk/handshake" in body
            await http(b, f"/push?to=ajax-{tag}-{i}&x={i}")
            status, _, body = await get_once(a, f"/chsk?{query}")  # the first poll, on any worker of A
            assert status == 200
            assert EDN.unpack_envelope(body.decode()).payload == [[Keyword("test/server-push"), i]], (i, body)

    asyncio.run(go())
