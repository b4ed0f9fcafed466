"""Scale-out across machines: one worker's link to the other nodes of a cluster through Redis.

A *node* is one ``sente serve`` (a supervisor and its workers on one machine, sharing memory) or one process
serving alone. Inside a node, workers reach each other through shared memory (:mod:`sente.cluster.backplane`);
:class:`RedisLink` adds the other nodes, and :class:`~sente.cluster.composite.CompositeBackplane` puts the two
behind the one :class:`~sente.protocol.backplane.Backplane` a server core sees.

**One link per worker**, not one per node: every worker publishes what its own flushes hand the backplane and
subscribes for its own connections, so cross-node traffic takes no extra hop through shared memory, and a
worker that dies takes only its own link with it (no owner to elect, nothing to fail over). The cost is one
pair of Redis connections per worker, and a message for a channel several workers of a node subscribe to is
received by each of them (each delivers to its own connections only).

Channels (``<prefix>`` is ``sente`` unless told):

* ``<prefix>:b:<slot>``: batches for uids whose ``crc32(uid EDN) % slots`` is ``slot`` (``slots``, default 256).
  A worker subscribes to the slots of the uids it holds, so with few uids per node a node does not receive the
  traffic of uids it has never seen; with many uids (several per slot) every worker ends up subscribed to every
  slot and filters by uid on delivery: the channel count stays bounded whatever the number of uids, at the cost
  of receiving pushes for neighbours in the same slot. More slots: finer filtering, more subscriptions.
* ``<prefix>:b:all``: broadcasts (every worker subscribes).
* ``<prefix>:presence``: presence changes, published by the Lua scripts below.

A message is a small header and the batch exactly as the sender packed it (nothing is re-encoded):
``b"S\\x01"``, flags (bit 0 ws, bit 1 ajax, bit 2 binary batch, bit 3 broadcast, bit 4 close), the length of
the node id, the sender's sequence number (8 bytes), the length of the uid's EDN (4 bytes), the node id, the
uid's EDN, the batch. Messages from the receiver's own node are ignored (its workers already got them through shared
memory); :class:`sente.Publisher` sends with an empty node id, so every node delivers those.

A *close* message (flag bit 4, no transport bits, empty batch) is Sente's ``[:chsk/close]`` for the uid, sent on
the uid's slot channel: every worker of another node that holds a connection of the uid holds its slot, so is
subscribed, and closes its own connections (``CorePeer.close_uid_here``); workers subscribed to the slot for
other uids find nothing to close. It is not forwarded through shared memory (each holder got it already). A node
that predates the flag sees no transport bit and ignores it.

Presence (keys share the hash tag ``{<prefix>}``): ``{p}:u:<uid EDN>`` is a hash member → transport mask
(1 ws, 2 ajax) of the *members* (one per worker: ``<node id>|<worker index>``) holding the uid;
``{p}:m:<member>`` is the same data by member; ``{p}:members`` is a sorted set of members scored by when they
expire (Redis's own clock, so the machines' clocks do not matter); ``{p}:seq`` numbers every change. Each
change is one Lua script, so the hash of a uid going from empty to non-empty (``:chsk/uidport-open``) or back
(``:chsk/uidport-close``) is decided once for the whole cluster, and answered to the worker that made it,
which fires the event. Every worker refreshes its member's expiry each ``heartbeat_s`` and sweeps members
expired ``ttl_s`` after their last heartbeat (a killed node): the sweep that removes a member reports the uids
that left the cluster with it, and that worker fires their ``uidport-close``. Every worker keeps a view of
the other nodes' presence (a snapshot on connect, then the change messages; changes older than the snapshot
are skipped by their sequence number), so ``connected_uids``, ``send`` (is the uid anywhere?) and the choice
to publish at all are answered locally, without a round trip.

Guarantees: **at most once** (Redis pub/sub keeps nothing: a message published while a subscriber is
disconnected is lost to it) and **per-sender order** (a worker publishes over one connection, in order, so
every receiver sees one sender's batches in the order they were flushed; batches of different senders may
interleave). A push to a uid that connected to another node in the last few milliseconds may be lost (the
sender's view has not caught up).

Outages (Redis unreachable): each node goes on with its local view: presence, sends, broadcasts and
uidport events between its own workers, exactly as without Redis. Cross-node batches are *dropped* (counted
in :attr:`RedisLink.stats`, never buffered) while the link is down (the batches queued or in flight when it
went, and every broadcast flushed during the outage); while it is up but slower than the flushes,
the outbound queue is capped (``max_queue`` messages, ``max_queue_bytes``) and the *oldest* batches are
dropped and counted. The link reconnects with exponential backoff (0.1 s doubling to 5 s, with jitter),
re-registers this worker's presence in one script (no uidport events for that: the node fired them
locally during the outage) and reloads its view. The state (``up``, ``down``, ``connecting``) is logged on
each change and readable as :attr:`RedisLink.state`; :mod:`sente.metrics` exports both (``sente_backplane_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import re
import socket
import struct
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .. import edn, metrics
from ..protocol.backplane import Transport, View

log = logging.getLogger("sente.cluster.redis")

MASKS: dict[str, int] = {"ws": 1, "ajax": 2, "any": 3}
TRANSPORT_BITS: tuple[tuple[Transport, int], ...] = (("ws", 1), ("ajax", 2))
BINARY, BROADCAST, CLOSE = 4, 8, 16
MAGIC = b"S\x01"
HEADER = struct.Struct(">2sBBQI")  # magic, flags, node id length, sender seq, uid EDN length
SLOTS = 256
HEARTBEAT_S = 1.0
TTL_S = 5.0
BACKOFF_S = (0.1, 5.0)
MAX_QUEUE = 10_000
MAX_QUEUE_BYTES = 64 << 20
MAX_PRESENCE_OPS = 100_000
"""Queued presence changes beyond which they are replaced by one full re-registration."""
PIPELINE = 512
SUBSCRIBE_POLL_S = 0.02
"""How long the reader waits for a message before it looks for subscription changes."""
FLUSH_ON_CLOSE_S = 1.0

OnBatch = Callable[[Transport, Any, "str | bytes"], None]
OnUid = Callable[[Any], None]


# ---------------------------------------------------------------------- names and messages


def channel_for(prefix: str, uid_key: bytes | None, slots: int = SLOTS) -> str:
    """The channel of a uid's batches (by its EDN), or the broadcast channel for None."""
    return f"{prefix}:b:all" if uid_key is None else f"{prefix}:b:{zlib.crc32(uid_key) % slots}"


def uid_key(uid: Any) -> bytes:
    """A uid as Redis knows it: its EDN text."""
    return edn.dumps(uid).encode()


def encode_message(node: bytes, seq: int, transports: int, uid: bytes | None, data: str | bytes) -> bytes:
    """One message: header, node id, uid EDN, the packed batch (see the module docstring); ``transports`` is
    a :data:`MASKS` value, or :data:`CLOSE` for a ``[:chsk/close]``."""
    flags = transports | (BINARY if isinstance(data, bytes) else 0) | (BROADCAST if uid is None else 0)
    key = b"" if uid is None else uid
    payload = data if isinstance(data, bytes) else data.encode()
    return HEADER.pack(MAGIC, flags, len(node), seq, len(key)) + node + key + payload


def decode_message(message: bytes) -> tuple[bytes, int, int, bytes | None, str | bytes]:
    """``(node, seq, transports, uid EDN or None, batch)`` (transports with :data:`CLOSE` for a close); ValueError
    if it is not one of ours."""
    magic, flags, node_len, seq, key_len = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise ValueError("not a sente message")
    i = HEADER.size
    node, key = message[i:i + node_len], message[i + node_len:i + node_len + key_len]
    raw = message[i + node_len + key_len:]
    data: str | bytes = raw if flags & BINARY else raw.decode()
    return node, seq, flags & (3 | CLOSE), None if flags & BROADCAST else key, data


def default_node_id(hint: str | None = None) -> str:
    """A node id unique to this process (or to ``hint``, e.g. the supervisor's shared-memory name) on this host."""
    tail = hint if hint is not None else f"{os.getpid()}-{os.urandom(4).hex()}"
    return re.sub(r"[\s|]", "_", f"{socket.gethostname()}-{tail}")


def keys(prefix: str) -> tuple[str, str, str]:
    """(members zset, sequence counter, presence channel)."""
    return f"{{{prefix}}}:members", f"{{{prefix}}}:seq", f"{prefix}:presence"


# ---------------------------------------------------------------------- Lua: presence, decided in one place

# KEYS: uid hash, member hash, seq. ARGV: member, uid EDN, mask, presence channel.
# Returns 1 when the uid entered the cluster, -1 when it left it, 0 otherwise.
SET_LUA = """
local before = redis.call('HLEN', KEYS[1])
local mask = tonumber(ARGV[3])
if mask == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], mask); redis.call('HSET', KEYS[2], ARGV[2], mask)
end
local after = redis.call('HLEN', KEYS[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], seq .. ' ' .. ARGV[1] .. ' ' .. mask .. ' ' .. ARGV[2])
if before == 0 and after > 0 then return 1 end
if before > 0 and after == 0 then return -1 end
return 0
"""

# KEYS: members zset, seq. ARGV: prefix, member, ttl ms, presence channel, then uid EDN, mask pairs.
# Replaces the member's whole presence; returns the uids that left the cluster with its old entries.
RESET_LUA = """
local p, m = ARGV[1], ARGV[2]
local mkey = '{' .. p .. '}:m:' .. m
local old = redis.call('HKEYS', mkey)
local closed = {}
local new = {}
for i = 5, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end
for _, u in ipairs(old) do
  if not new[u] then
    local ukey = '{' .. p .. '}:u:' .. u
    redis.call('HDEL', ukey, m)
    if redis.call('HLEN', ukey) == 0 then table.insert(closed, u) end
  end
end
redis.call('DEL', mkey)
for u, mask in pairs(new) do
  redis.call('HSET', '{' .. p .. '}:u:' .. u, m, mask); redis.call('HSET', mkey, u, mask)
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), m)
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], seq .. ' ' .. m .. ' R ')
return closed
"""

# KEYS: members zset. ARGV: member, ttl ms. Returns 1 if the member was registered (not swept meanwhile).
HEARTBEAT_LUA = """
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]), ARGV[1])
if was then return 1 end
return 0
"""

# Drops one member and its presence (shared by the sweep and a clean stop); appends the uids that left.
_DROP_MEMBER_LUA = """
local function drop_member(p, m, channel, closed)
  local mkey = '{' .. p .. '}:m:' .. m
  for _, u in ipairs(redis.call('HKEYS', mkey)) do
    local ukey = '{' .. p .. '}:u:' .. u
    redis.call('HDEL', ukey, m)
    if redis.call('HLEN', ukey) == 0 then table.insert(closed, u) end
  end
  redis.call('DEL', mkey)
  redis.call('ZREM', KEYS[1], m)
  local seq = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', channel, seq .. ' ' .. m .. ' - ')
end
"""

# KEYS: members zset, seq. ARGV: prefix, presence channel, max members. Removes expired members (their presence
# included); returns the uids that left the cluster with them. Atomic: one sweeper gets each dead member.
SWEEP_LUA = _DROP_MEMBER_LUA + """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local closed = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  drop_member(ARGV[1], m, ARGV[2], closed)
end
return closed
"""

# KEYS: members zset, seq. ARGV: prefix. The presence of every live member: {seq, member, {uid, mask...}, ...}.
SNAPSHOT_LUA = """
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(out, m)
  table.insert(out, redis.call('HGETALL', '{' .. ARGV[1] .. '}:m:' .. m))
end
return out
"""

# KEYS: members zset, seq. ARGV: prefix, member, presence channel. A member leaving on purpose (a clean stop).
REMOVE_LUA = _DROP_MEMBER_LUA + """
local closed = {}
drop_member(ARGV[1], ARGV[2], ARGV[3], closed)
return closed
"""


# ---------------------------------------------------------------------- the link


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
        self._slot_refs: dict[int, int] = {}
        self._subscribed: set[str] = set()
        # the other nodes' presence: uid EDN -> {member: mask}
        self._view: dict[bytes, dict[str, int]] = {}
        self._values: dict[bytes, Any] = {}
        self._by_member: dict[str, set[bytes]] = {}
        self._snap_seq = 0
        # outbound work
        self._ops: deque[_Op] = deque()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queue_bytes = 0
        self._reset_due = True
        self._first_reset = True
        self._wake: asyncio.Event | None = None
        self._subs_synced: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_batch: OnBatch | None = None
        self._on_open: OnUid | None = None
        self._on_close: OnUid | None = None
        self._on_close_uid: OnUid | None = None
        self._closing = False
        self._outage_logged = False

    # ------------------------------------------------------------------ the view (synchronous)

    @property
    def active(self) -> bool:
        """Connected, registered and holding a current view of the other nodes."""
        return self.state == "up"

    def remote(self, uid: Any, transport: Transport) -> bool:
        """Whether another node holds a client of ``uid`` on ``transport``."""
        if not self.active or not self._view:
            return False
        entry = self._view.get(uid_key(uid))
        bit = MASKS[transport]
        return entry is not None and any(mask & bit for mask in entry.values())

    def remote_any(self, transport: Transport) -> bool:
        """Whether another node holds any client on ``transport`` (worth publishing a broadcast)."""
        if not self.active:
            return False
        bit = MASKS[transport]
        return any(mask & bit for entry in self._view.values() for mask in entry.values())

    def connected(self, uid: Any) -> bool:
        return self.active and bool(self._view) and uid_key(uid) in self._view

    def uids(self, view: View) -> frozenset[Any]:
        """The uids other nodes hold (empty while Redis is down: the node serves its local view)."""
        if not self.active:
            return frozenset()
        bit = MASKS[view]
        return frozenset(self._values[k] for k, entry in self._view.items() if any(m & bit for m in entry.values()))

    # ------------------------------------------------------------------ this worker's side (synchronous)

    def set_presence(self, uid: Any, mask: int, fallback: bool) -> bool:
        """This worker now holds ``uid`` on ``mask`` (0: not at all). True when Redis decides the uidport event
        (answered later through the callbacks); False when Redis is down and the caller's ``fallback`` stands."""
        key = uid_key(uid)
        old = self._mine.get(key, 0)
        self._mine_version += 1
        if mask:
            self._mine[key] = mask
        else:
            self._mine.pop(key, None)
        if bool(old) != bool(mask):
            slot = zlib.crc32(key) % self.slots
            n = self._slot_refs.get(slot, 0) + (1 if mask else -1)
            if n > 0:
                self._slot_refs[slot] = n
            else:
                self._slot_refs.pop(slot, None)
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

    def publish_close(self, uid: Any) -> None:
        """Queue Sente's ``[:chsk/close]`` for ``uid`` to the other nodes (dropped and counted while down)."""
        if not self.active:
            self.stats.dropped_down += 1
            return
        key = uid_key(uid)
        self._enqueue(key, encode_message(self._node_b, next(self._seq), CLOSE, key, b""))

    def _enqueue(self, key: bytes | None, message: bytes) -> None:
        self._queue.append((channel_for(self.prefix, key, self.slots), message))
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
        self._subs_synced = asyncio.Event()
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
        self._values.clear()
        self._by_member.clear()

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
            self._subscribed = set()
            await pubsub.subscribe(self._presence_ch, channel_for(self.prefix, None))
            await self._sync_subscriptions(pubsub)
            version = self._mine_version
            await self._reset(client)
            await self._snapshot(client)
            self._set_state("up")
            if self._mine_version != version:  # changed while we registered: decided locally, register again
                self._reset_due = True
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(c) for c in
                     (self._reader(client, pubsub), self._writer(client, pubsub), self._heartbeat(client))]
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

    def _wanted(self) -> set[str]:
        return {channel_for(self.prefix, None)} | {f"{self.prefix}:b:{slot}" for slot in self._slot_refs}

    def _subscriptions_stale(self) -> bool:
        return self._wanted() != self._subscribed | {channel_for(self.prefix, None)}

    async def _sync_subscriptions(self, pubsub: Any) -> None:
        wanted = self._wanted()
        add, remove = wanted - self._subscribed - {channel_for(self.prefix, None)}, self._subscribed - wanted
        if add:
            await pubsub.subscribe(*sorted(add))
        if remove:
            await pubsub.unsubscribe(*sorted(remove))
        self._subscribed = (self._subscribed | add) - remove

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
        reply = await client.eval(SNAPSHOT_LUA, 2, self._members_key, self._seq_key, self.prefix)
        view: dict[bytes, dict[str, int]] = {}
        by_member: dict[str, set[bytes]] = {}
        for i in range(1, len(reply), 2):
            member = reply[i].decode()
            if self._own(member):
                continue
            flat = reply[i + 1]
            uids = by_member.setdefault(member, set())
            for j in range(0, len(flat), 2):
                view.setdefault(flat[j], {})[member] = int(flat[j + 1])
                uids.add(flat[j])
        self._snap_seq = int(reply[0])
        self._view, self._by_member = view, by_member
        self._values = {k: self._values[k] if k in self._values else edn.loads(k.decode()) for k in view}

    def _own(self, member: str) -> bool:
        return member.rpartition("|")[0] == self.node

    async def _reader(self, client: Any, pubsub: Any) -> None:
        """The only task using the subscriber connection: it applies subscription changes between reads."""
        assert self._subs_synced is not None
        while True:
            if not self._subs_synced.is_set():
                await self._sync_subscriptions(pubsub)
                self._subs_synced.set()
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=SUBSCRIBE_POLL_S)
            if message is None:
                continue
            data = message["data"]
            if message["channel"] == self._presence_ch.encode():
                if self._on_presence(data):
                    await self._snapshot(client)
            else:
                self._on_message(data)

    def _on_presence(self, data: bytes) -> bool:
        """Apply one change to the view; True when the whole view must be reloaded (a member re-registered)."""
        seq_b, member_b, mask_b, key = data.split(b" ", 3)
        if int(seq_b) <= self._snap_seq:
            return False
        member = member_b.decode()
        if self._own(member):
            return False
        if mask_b == b"R":
            return True
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

    def _on_message(self, message: bytes) -> None:
        try:
            node, _, transports, key, data = decode_message(message)
            if node == self._node_b or self._on_batch is None:
                return
            self.stats.received += 1
            uid = None if key is None else edn.loads(key.decode())
            if transports & CLOSE:
                if key is not None and self._on_close_uid is not None:
                    self._on_close_uid(uid)
                return
            for transport, bit in TRANSPORT_BITS:
                if transports & bit:
                    self._on_batch(transport, uid, data)
        except Exception:  # one bad message must not stop the link
            log.exception("dropped an unreadable message from Redis")

    async def _writer(self, client: Any, pubsub: Any) -> None:
        assert self._wake is not None and self._subs_synced is not None
        while True:
            if not (self._ops or self._queue or self._reset_due):
                self._wake.clear()
                await self._wake.wait()
            if self._subscriptions_stale():  # subscribe before the presence that makes others publish to us
                self._subs_synced.clear()
                await self._subs_synced.wait()
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
