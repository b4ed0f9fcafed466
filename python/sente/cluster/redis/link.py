"""One worker's link to the other nodes through Redis: :class:`RedisLink` (see :mod:`sente.cluster.redis`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ... import edn, metrics
from ...protocol.backplane import Recipients, Transport, View
from .scripts import HEARTBEAT_LUA, REMOVE_LUA, RESET_LUA, SET_LUA, SNAPSHOT_LUA, SWEEP_LUA
from .view import RemoteView
from .wire import (
    CLOSE,
    MANY,
    MASKS,
    SLOTS,
    TRANSPORT_BITS,
    channel_for,
    decode_message,
    default_node_id,
    encode_message,
    keys,
    uid_key,
)

log = logging.getLogger("sente.cluster.redis")

HEARTBEAT_S = 1.0
TTL_S = 5.0
BACKOFF_S = (0.1, 5.0)
MAX_QUEUE = 10_000
MAX_QUEUE_BYTES = 64 << 20
MAX_PRESENCE_OPS = 100_000
"""Queued presence changes beyond which they are replaced by one full re-registration."""
PIPELINE = 512
FLUSH_ON_CLOSE_S = 1.0

OnBatch = Callable[[Transport, Any, "str | bytes"], None]
OnUid = Callable[[Any], None]


@dataclass
class RedisStats:
    """What the link did, for logs and metrics (plain ints, this worker only)."""

    published: int = 0
    received: int = 0
    dropped_down: int = 0
    """Batches for other nodes dropped because Redis was unreachable."""
    dropped_overflow: int = 0
    """Batches dropped (oldest first) because the outbound queue was full."""
    connects: int = 0
    failures: int = 0
    swept_members: int = 0
    state_changes: list[str] = field(default_factory=list)


@dataclass
class _Op:
    uid: Any
    key: bytes
    mask: int
    fallback: bool
    """What the node's own view decided (uid new to / gone from the node): fired if Redis cannot answer."""


class RedisLink:
    """This worker's presence in Redis, its view of the other nodes, and its cross-node batches.

    The synchronous methods (``remote``, ``uids``, ``publish``, ``set_presence``...) never wait for Redis:
    they read the local view or queue work for the link's tasks, which :meth:`start` runs on the event loop.
    """

    def __init__(
        self,
        url: str,
        *,
        node: str | None = None,
        member: str | None = None,
        prefix: str = "sente",
        heartbeat_s: float = HEARTBEAT_S,
        ttl_s: float = TTL_S,
        slots: int = SLOTS,
        max_queue: int = MAX_QUEUE,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        self.url = url
        self.node = node if node is not None else default_node_id()
        self.member = member if member is not None else f"{self.node}|0"
        self.prefix, self.slots = prefix, slots
        self.heartbeat_s, self.ttl_s = heartbeat_s, ttl_s
        self.max_queue, self.max_queue_bytes = max_queue, max_queue_bytes
        self.stats = RedisStats()
        self.state = "down"
        self._node_b = self.node.encode()
        self._members_key, self._seq_key, self._presence_ch = keys(prefix)
        self._seq = itertools.count(1)
        # this worker's own presence (kept while Redis is down, for the re-registration)
        self._mine: dict[bytes, int] = {}
        self._mine_version = 0
        self._view = RemoteView(self.node)
        # outbound work
        self._ops: deque[_Op] = deque()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queue_bytes = 0
        self._reset_due = True
        self._first_reset = True
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_batch: OnBatch | None = None
        self._on_open: OnUid | None = None
        self._on_close: OnUid | None = None
        self._on_close_uid: OnUid | None = None
        self._closing = False
        self._outage_logged = False
        self.secret_fingerprint: str | None = None
        """A fingerprint of this node's session secret (set by the server): nodes compare it in Redis."""

    # ------------------------------------------------------------------ the view (synchronous)

    @property
    def active(self) -> bool:
        """Connected, registered and holding a current view of the other nodes."""
        return self.state == "up"

    def remote(self, uid: Any, transport: Transport) -> bool:
        """Whether another node holds a client of ``uid`` on ``transport``."""
        return self.active and self._view.remote(uid, transport)

    def remote_any(self, transport: Transport) -> bool:
        """Whether another node holds any client on ``transport`` (worth publishing a broadcast)."""
        return self.active and self._view.remote_any(transport)

    def connected(self, uid: Any) -> bool:
        return self.active and self._view.connected(uid)

    def uids(self, view: View) -> frozenset[Any]:
        """The uids other nodes hold (empty while Redis is down: the node serves its local view)."""
        return self._view.uids(view) if self.active else frozenset()

    # ------------------------------------------------------------------ this worker's side (synchronous)

    def set_presence(self, uid: Any, mask: int, fallback: bool) -> bool:
        """This worker now holds ``uid`` on ``mask`` (0: not at all). True when Redis decides the uidport event
        (answered later through the callbacks); False when Redis is down and the caller's ``fallback`` stands."""
        key = uid_key(uid)
        self._mine_version += 1
        if mask:
            self._mine[key] = mask
        else:
            self._mine.pop(key, None)
        if not self.active:
            return False
        if len(self._ops) >= MAX_PRESENCE_OPS:
            self._ops.clear()
            self._reset_due = True
        else:
            self._ops.append(_Op(uid, key, mask, fallback))
        self._kick()
        return True

    def publish(self, transport: Transport, uid: Any | None, data: str | bytes) -> None:
        """Queue a packed batch for the other nodes' clients of ``uid`` (every client if None)."""
        if not self.active:
            self.stats.dropped_down += 1
            return
        key = None if uid is None else uid_key(uid)
        self._enqueue(key, encode_message(self._node_b, next(self._seq), MASKS[transport], key, data))

    def publish_to(self, transport: Transport, uids: list[Any], data: str | bytes) -> None:
        """Queue one packed batch for the other nodes' clients of several uids: one message per slot channel among
        them (naming its uids), not one per uid."""
        if not self.active:
            self.stats.dropped_down += 1
            return
        by_channel: dict[str, list[bytes]] = {}
        for uid in uids:
            key = uid_key(uid)
            by_channel.setdefault(channel_for(self.prefix, key, self.slots), []).append(key)
        for channel, on_channel in by_channel.items():
            if len(on_channel) == 1:
                message = encode_message(self._node_b, next(self._seq), MASKS[transport], on_channel[0], data)
            else:
                many = b"[" + b" ".join(on_channel) + b"]"
                message = encode_message(self._node_b, next(self._seq), MASKS[transport] | MANY, many, data)
            self._enqueue_on(channel, message)

    def publish_close(self, uid: Any) -> None:
        """Queue Sente's ``[:chsk/close]`` for ``uid`` to the other nodes (dropped and counted while down)."""
        if not self.active:
            self.stats.dropped_down += 1
            return
        key = uid_key(uid)
        self._enqueue(key, encode_message(self._node_b, next(self._seq), CLOSE, key, b""))

    def _enqueue(self, key: bytes | None, message: bytes) -> None:
        self._enqueue_on(channel_for(self.prefix, key, self.slots), message)

    def _enqueue_on(self, channel: str, message: bytes) -> None:
        self._queue.append((channel, message))
        self._queue_bytes += len(message)
        while len(self._queue) > self.max_queue or self._queue_bytes > self.max_queue_bytes:
            _, dropped = self._queue.popleft()
            self._queue_bytes -= len(dropped)
            self.stats.dropped_overflow += 1
            if self.stats.dropped_overflow in (1, 10, 100, 1000) or self.stats.dropped_overflow % 10_000 == 0:
                log.warning("Redis outbound queue full: %d cross-node batches dropped so far (oldest first)",
                            self.stats.dropped_overflow)
        self._kick()

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self, on_batch: OnBatch, on_open: OnUid, on_close: OnUid, on_close_uid: OnUid | None = None) -> None:
        """Run the link on the running loop: batches from other nodes go to ``on_batch``; the uidport events
        Redis decided for this worker go to ``on_open``/``on_close``; another node's ``[:chsk/close]`` for a uid
        goes to ``on_close_uid``."""
        self._on_batch, self._on_open, self._on_close = on_batch, on_open, on_close
        self._on_close_uid = on_close_uid
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sente-redis {self.member}")
        metrics.track_link(self)

    def stop(self) -> None:
        """Stop at once (what is queued is dropped; the member expires after the TTL unless :meth:`aclose` ran)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._set_state("down")
        metrics.untrack_link(self)

    async def aclose(self, timeout: float = FLUSH_ON_CLOSE_S) -> None:
        """Stop cleanly: send what is queued (for at most ``timeout``), withdraw this worker's presence, stop."""
        if self._task is None:
            return
        if self.active:
            for _ in range(int(timeout / 0.01)):
                if not (self._ops or self._queue) or not self.active:
                    break
                await asyncio.sleep(0.01)
            if self.active:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    client = aioredis.Redis.from_url(self.url, socket_connect_timeout=timeout, socket_timeout=timeout)
                    try:
                        closed = await client.eval(REMOVE_LUA, 2, self._members_key, self._seq_key, self.prefix,
                                                   self.member, self._presence_ch)
                        self._fire(self._on_close, closed)
                    finally:
                        await client.aclose()
        self.stop()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stats.state_changes.append(state)
            if state == "up":
                log.info("Redis backplane up (%s, member %s)", self.url, self.member)
                self._outage_logged = False
            elif state == "connecting":
                log.debug("Redis backplane connecting (%s)", self.url)
            elif not self._closing and not self._outage_logged:
                self._outage_logged = True  # once per outage, not once per reconnect attempt
                log.warning("Redis backplane %s (%s): serving the local view, cross-node batches dropped; "
                            "retrying with backoff", state, self.url)

    async def _run(self) -> None:
        backoff = BACKOFF_S[0]
        while not self._closing:
            self._set_state("connecting")
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisError, OSError, ValueError) as e:
                self.stats.failures += 1
                if self.state == "up":
                    backoff = BACKOFF_S[0]
                self._set_state("down")
                log.debug("Redis session ended: %r", e)
            self._drop_outbound()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_S[1])

    def _drop_outbound(self) -> None:
        """Redis went away: queued batches are dropped (counted); queued presence falls back to the node's view."""
        self.stats.dropped_down += len(self._queue)
        self._queue.clear()
        self._queue_bytes = 0
        ops, self._ops = list(self._ops), deque()
        self._fallback(ops)
        self._reset_due = True
        self._view.clear()

    def _fallback(self, ops: list[_Op]) -> None:
        for op in ops:
            if op.fallback:
                self._fire(self._on_open if op.mask else self._on_close, [op.key], {op.key: op.uid})

    def _fire(self, callback: OnUid | None, keys: Any, values: dict[bytes, Any] | None = None) -> None:
        if callback is None or not keys:
            return
        for key in keys:
            try:
                callback(values[key] if values and key in values else edn.loads(key))
            except Exception:
                log.exception("uidport callback failed for %r", key)

    async def _session(self) -> None:
        timeout = max(1.0, self.heartbeat_s * 2)
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=timeout, socket_timeout=None,
                                         health_check_interval=0)
        pubsub = client.pubsub()
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.wait_for(client.ping(), timeout)
            self.stats.connects += 1
            # every slot before the link is up: a client served from then on gets what any node sends its uid
            await pubsub.subscribe(self._presence_ch, channel_for(self.prefix, None),
                                   *(f"{self.prefix}:b:{slot}" for slot in range(self.slots)))
            version = self._mine_version
            await self._reset(client)
            await self._snapshot(client)
            await self._check_secret(client)
            self._set_state("up")
            if self._mine_version != version:  # changed while we registered: decided locally, register again
                self._reset_due = True
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(c) for c in
                     (self._reader(client, pubsub), self._writer(client), self._heartbeat(client))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the session
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(BaseException):
                await pubsub.aclose()
            with contextlib.suppress(BaseException):
                await client.aclose()

    async def _check_secret(self, client: Any, *, refresh: bool = False) -> None:
        """Log an error when this node's session secret is not the cluster's: the first node's fingerprint stays
        in ``<prefix>:secret`` while any node with the same secret heartbeats (and expires after that)."""
        if self.secret_fingerprint is None:
            return
        key, ttl = f"{self.prefix}:secret", max(1, int(self.ttl_s * 3))
        mine = self.secret_fingerprint.encode()
        if not refresh:
            await client.set(key, mine, nx=True, ex=ttl)
        theirs = await client.get(key)
        if theirs == mine:
            await client.expire(key, ttl)
        elif theirs is None:
            await client.set(key, mine, nx=True, ex=ttl)
        elif not refresh:
            log.error("this node's session secret differs from the cluster's (fingerprint %s, cluster %s): the other "
                      "nodes refuse the sessions it issues (403 Bad CSRF token) and it refuses theirs. Give every "
                      "node the same SENTE_SESSION_SECRET", mine.decode(), theirs.decode(errors="replace"))

    async def _reset(self, client: Any) -> None:
        """Register this worker's whole presence in one script (on connect, after a sweep, after an overflow)."""
        self._reset_due = False
        self._ops.clear()  # the reset carries the current state
        args: list[Any] = [self.prefix, self.member, int(self.ttl_s * 1000), self._presence_ch]
        for key, mask in self._mine.items():
            args += [key, mask]
        closed = await client.eval(RESET_LUA, 2, self._members_key, self._seq_key, *args)
        if self._first_reset:  # a replacement worker: its predecessor's uids that left the cluster
            self._first_reset = False
            self._fire(self._on_close, closed)

    async def _snapshot(self, client: Any) -> None:
        self._view.load(await client.eval(SNAPSHOT_LUA, 2, self._members_key, self._seq_key, self.prefix))

    async def _reader(self, client: Any, pubsub: Any) -> None:
        """The only task using the subscriber connection."""
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None:
                continue
            data = message["data"]
            if message["channel"] == self._presence_ch.encode():
                if self._view.apply(data):
                    await self._snapshot(client)
            else:
                self._on_message(data)

    def _on_message(self, message: bytes) -> None:
        try:
            node, _, transports, key, data = decode_message(message)
            if node == self._node_b or self._on_batch is None:
                return
            self.stats.received += 1
            if key is None:
                uid = None
            elif transports & MANY:
                uid = Recipients(edn.loads(key.decode()))
            else:
                uid = edn.loads(key.decode())
            if transports & CLOSE:
                if key is not None and key in self._mine and self._on_close_uid is not None:
                    self._on_close_uid(uid)
                return
            for transport, bit in TRANSPORT_BITS:
                if transports & bit:
                    self._on_batch(transport, uid, data)
        except Exception:  # one bad message must not stop the link
            log.exception("dropped an unreadable message from Redis")

    async def _writer(self, client: Any) -> None:
        assert self._wake is not None
        while True:
            if not (self._ops or self._queue or self._reset_due):
                self._wake.clear()
                await self._wake.wait()
            if self._reset_due:
                await self._reset(client)
            ops = list(self._ops)
            self._ops.clear()
            pubs = [self._queue.popleft() for _ in range(min(PIPELINE, len(self._queue)))]
            self._queue_bytes -= sum(len(m) for _, m in pubs)
            pipe = client.pipeline(transaction=False)
            prefix = "{" + self.prefix + "}"
            for op in ops:
                pipe.eval(SET_LUA, 3, prefix.encode() + b":u:" + op.key, f"{prefix}:m:{self.member}",
                          self._seq_key, self.member, op.key, op.mask, self._presence_ch)
            for channel, message in pubs:
                pipe.publish(channel, message)
            try:
                results = await pipe.execute()
            except BaseException:
                self._fallback(ops)
                self.stats.dropped_down += len(pubs)
                raise
            self.stats.published += len(pubs)
            for op, result in zip(ops, results, strict=False):
                if result == 1:
                    self._fire(self._on_open, [op.key], {op.key: op.uid})
                elif result == -1:
                    self._fire(self._on_close, [op.key], {op.key: op.uid})

    async def _heartbeat(self, client: Any) -> None:
        ttl_ms = int(self.ttl_s * 1000)
        while True:
            await asyncio.sleep(self.heartbeat_s)
            registered = await client.eval(HEARTBEAT_LUA, 1, self._members_key, self.member, ttl_ms)
            await self._check_secret(client, refresh=True)
            if not registered:
                log.warning("Redis member %s had expired (a stall longer than %.1f s?): registering again",
                            self.member, self.ttl_s)
                self._reset_due = True
                self._kick()
            closed = await client.eval(SWEEP_LUA, 2, self._members_key, self._seq_key, self.prefix,
                                       self._presence_ch, 16)
            if closed:
                self.stats.swept_members += 1
                log.info("swept expired Redis members: %d uids left the cluster", len(closed))
                self._fire(self._on_close, closed)
