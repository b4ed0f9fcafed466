"""Push to a Sente cluster from any Python process, through its Redis, without running a server.

Like socket.io's emitter: a web view or a job worker builds a :class:`Publisher` (or :class:`AsyncPublisher`)
on the cluster's Redis URL and calls ``send(uid, event)`` or ``broadcast(event)``. The event is packed once,
here, into the batch the nodes write to their clients as is (so the packer, ``edn`` or ``transit``, and
``str_keys`` must be the cluster's), and published on the uid's channel (or the broadcast channel) for both
transports; every node holding clients of the uid delivers it (see :mod:`sente.cluster.redis` for channels and
guarantees: at most once; the pushes of one publisher arrive in order).

``connected(uid)`` and ``connected_uids()`` read the cluster's presence in Redis.

From the shell: ``sente publish --redis-url redis://host:6379/0 --uid alice '[:app/notice {:text "hi"}]'``
(or ``--broadcast``).
"""

from __future__ import annotations

import itertools
from typing import Any

import redis
import redis.asyncio as aioredis

from . import edn
from .cluster.redis import SLOTS, channel_for, encode_message, uid_key
from .keys import StrKeysPacker
from .packers import Packer, get_packer
from .protocol.events import ALL_USERS_WITHOUT_UID, NIL_UID, make_event

BOTH_TRANSPORTS = 3


class _Packing:
    def __init__(self, packer: str | Packer, str_keys: bool, prefix: str, slots: int) -> None:
        self.packer = StrKeysPacker(get_packer(packer)) if str_keys else get_packer(packer)
        self.prefix, self.slots = prefix, slots
        self.node = b""  # no node: every node delivers what a publisher sends
        self._seq = itertools.count(1)

    def message(self, uid: Any | None, event: Any) -> tuple[str, bytes]:
        if uid is ALL_USERS_WITHOUT_UID:
            uid = NIL_UID
        batch = self.packer.pack_batch([self.packer.encode_event(make_event(event))])
        key = None if uid is None else uid_key(uid)
        return channel_for(self.prefix, key, self.slots), encode_message(self.node, next(self._seq),
                                                                         BOTH_TRANSPORTS, key, batch)

    def uid_hash(self, uid: Any) -> str:
        return f"{{{self.prefix}}}:u:{edn.dumps(uid)}"

    def pattern(self) -> str:
        return f"{{{self.prefix}}}:u:*"

    def uid_of(self, key: bytes) -> Any:
        return edn.loads(key[len(self.pattern()) - 1:].decode())


class Publisher:
    """Synchronous pushes to a Sente cluster (``redis_url``: the URL its nodes were given)."""

    def __init__(self, redis_url: str, *, packer: str | Packer = "edn", str_keys: bool = True,
                 prefix: str = "sente", slots: int = SLOTS) -> None:
        self._p = _Packing(packer, str_keys, prefix, slots)
        self.redis = redis.Redis.from_url(redis_url)

    def send(self, uid: Any, event: Any) -> int:
        """Push ``event`` to every connection of ``uid``, on any node; how many node workers received it."""
        if uid is None:
            raise ValueError("send needs a uid (use sente/all-users-without-uid for clients without one)")
        return int(self.redis.publish(*self._p.message(uid, event)))

    def broadcast(self, event: Any) -> int:
        """Push ``event`` to every connected uid of the cluster; how many node workers received it."""
        return int(self.redis.publish(*self._p.message(None, event)))

    def connected(self, uid: Any) -> bool:
        return bool(self.redis.exists(self._p.uid_hash(uid)))

    def connected_uids(self, limit: int = 1_000_000) -> frozenset[Any]:
        """The uids connected anywhere in the cluster (a SCAN: fine for an admin page, not a hot path)."""
        found = []
        for key in itertools.islice(self.redis.scan_iter(match=self._p.pattern(), count=1000), limit):
            found.append(self._p.uid_of(key))
        return frozenset(found)

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPublisher:
    """:class:`Publisher` for asyncio code (``await pub.send(uid, event)``)."""

    def __init__(self, redis_url: str, *, packer: str | Packer = "edn", str_keys: bool = True,
                 prefix: str = "sente", slots: int = SLOTS) -> None:
        self._p = _Packing(packer, str_keys, prefix, slots)
        self.redis = aioredis.Redis.from_url(redis_url)

    async def send(self, uid: Any, event: Any) -> int:
        if uid is None:
            raise ValueError("send needs a uid (use sente/all-users-without-uid for clients without one)")
        return int(await self.redis.publish(*self._p.message(uid, event)))

    async def broadcast(self, event: Any) -> int:
        return int(await self.redis.publish(*self._p.message(None, event)))

    async def connected(self, uid: Any) -> bool:
        return bool(await self.redis.exists(self._p.uid_hash(uid)))

    async def connected_uids(self, limit: int = 1_000_000) -> frozenset[Any]:
        found = []
        async for key in self.redis.scan_iter(match=self._p.pattern(), count=1000):
            found.append(self._p.uid_of(key))
            if len(found) >= limit:
                break
        return frozenset(found)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
