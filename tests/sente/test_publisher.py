"""``sente.Publisher``, ``AsyncPublisher`` and ``sente publish`` against a real redis-server: what they publish
is exactly what a node's Redis link hands its core (a packed batch for both transports), and presence reads
the cluster's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

import sente
from sente import edn
from sente.cluster.redis import SLOTS
from sente.packers import EdnPacker
from tests.sente.cluster.test_redis import Node, RedisServer, nodes, running_redis, wait_until

K = edn.Keyword


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def pushed(node: Node) -> list[tuple[str, Any, Any]]:
    return [(t, u, EdnPacker().unpack_envelope(d).payload) for t, u, d in node.batches]


def test_publisher_sends_and_broadcasts_to_a_node(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a") as (a,):
            prefix = a.link.prefix
            assert zlib.crc32(b'"alice"') % SLOTS != zlib.crc32(b'"bob"') % SLOTS
            a.join("alice")
            with sente.Publisher(redis_server.url, prefix=prefix) as pub:
                await wait_until(lambda: pub.connected("alice"), what="alice registered")
                assert pub.connected_uids() == frozenset({"alice"}) and not pub.connected("bob")
                assert await asyncio.to_thread(pub.send, "alice", ["app/hi", {"n": 1}]) == 1
                await asyncio.to_thread(pub.send, "bob", ["app/hi", 2])  # no holder: a's core will drop it
                await asyncio.to_thread(pub.broadcast, [K("app/all")])
                with pytest.raises(ValueError):
                    pub.send(None, ["app/x"])
            # every worker listens to every slot (a uid may connect at any moment); its core keeps its own uids' only
            await wait_until(lambda: len(a.batches) == 6, what="6 deliveries (3 pushes x 2 transports)")
            got = pushed(a)
            assert got[:2] == [("ws", "alice", [[K("app/hi"), {K("n"): 1}]]),
                               ("ajax", "alice", [[K("app/hi"), {K("n"): 1}]])]
            assert got[2:4] == [("ws", "bob", [[K("app/hi"), 2]]), ("ajax", "bob", [[K("app/hi"), 2]])]
            assert got[4:] == [("ws", None, [[K("app/all")]]), ("ajax", None, [[K("app/all")]])]

    asyncio.run(go())


def test_async_publisher(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a") as (a,):
            a.join(42, "ajax")
            async with sente.AsyncPublisher(redis_server.url, prefix=a.link.prefix) as pub:
                await wait_until(lambda: 42 in a.bp.uids("ajax"), what="registered")
                for _ in range(100):
                    if await pub.connected(42):
                        break
                    await asyncio.sleep(0.01)
                assert await pub.connected_uids() == frozenset({42})
                for i in range(20):
                    await pub.send(42, ["app/n", i])
            await wait_until(lambda: len(a.batches) == 40, what="40 deliveries")
            assert [p[0][1] for t, _, p in pushed(a) if t == "ajax"] == list(range(20))  # in order

    asyncio.run(go())


def test_sente_publish_cli(redis_server: RedisServer) -> None:
    async def go() -> None:
        async with nodes(redis_server.url, "a") as (a,):
            a.join("alice")
            args = [sys.executable, "-m", "sente", "publish", "--redis-url", redis_server.url, "--prefix",
                    a.link.prefix]
            out = await asyncio.to_thread(subprocess.run, [*args, "--uid", "alice", '[:app/hi {:text "yo"}]'],
                                          capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            assert "received by 1 node workers" in out.stdout
            out = await asyncio.to_thread(subprocess.run, [*args, "--broadcast", "[:app/all]"],
                                          capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            bad = await asyncio.to_thread(subprocess.run, [*args, "[:app/x]"], capture_output=True, text=True,
                                          timeout=30)
            assert bad.returncode == 2 and "--uid U or --broadcast" in bad.stderr
            await wait_until(lambda: len(a.batches) == 4, what="4 deliveries")
            assert pushed(a)[0] == ("ws", "alice", [[K("app/hi"), {K("text"): "yo"}]])
            assert pushed(a)[2] == ("ws", None, [[K("app/all")]])

    asyncio.run(go())
