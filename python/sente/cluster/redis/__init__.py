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

Wire format: :mod:`.wire`; presence scripts: :mod:`.scripts`; the view of the other nodes: :mod:`.view`; the link
itself: :mod:`.link`.

Guarantees: **at most once** (Redis pub/sub keeps nothing: a message published while a subscriber is
disconnected is lost to it) and **per-sender order** (a worker publishes over one connection, in order, so
every receiver sees one sender's batches in the order they were flushed; batches of different senders may
interleave). A push sent after a client's handshake was written on another node reaches it while Redis is up
(that worker subscribed to every slot before serving). One race remains: a uid this node holds too, that opened
a connection on another node a few milliseconds before the push (the view decides then, and may lag).

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

from .link import (
    BACKOFF_S,
    FLUSH_ON_CLOSE_S,
    HEARTBEAT_S,
    MAX_PRESENCE_OPS,
    MAX_QUEUE,
    MAX_QUEUE_BYTES,
    PIPELINE,
    TTL_S,
    OnBatch,
    OnUid,
    RedisLink,
    RedisStats,
)
from .scripts import HEARTBEAT_LUA, REMOVE_LUA, RESET_LUA, SET_LUA, SNAPSHOT_LUA, SWEEP_LUA
from .wire import (
    BINARY,
    BROADCAST,
    CLOSE,
    HEADER,
    MAGIC,
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

__all__ = [
    "BACKOFF_S", "BINARY", "BROADCAST", "CLOSE", "FLUSH_ON_CLOSE_S", "HEADER", "HEARTBEAT_LUA", "HEARTBEAT_S",
    "MAGIC", "MANY", "MASKS", "MAX_PRESENCE_OPS", "MAX_QUEUE", "MAX_QUEUE_BYTES", "PIPELINE", "REMOVE_LUA",
    "RESET_LUA", "SET_LUA", "SLOTS", "SNAPSHOT_LUA", "SWEEP_LUA", "TRANSPORT_BITS", "TTL_S", "OnBatch", "OnUid",
    "RedisLink", "RedisStats", "channel_for", "decode_message", "default_node_id", "encode_message", "keys",
    "uid_key",
]
