"""The Redis link's wire format: channel and key names, and the message that carries one packed batch.

Channels (``<prefix>`` is ``sente`` unless told):

* ``<prefix>:b:<slot>``: batches for uids whose ``crc32(uid EDN) % slots`` is ``slot`` (``slots``, default 256).
  Every worker subscribes to every slot once, before its link counts as up, and its core delivers only to its
  own clients: a client's uid is reachable from the moment the worker serves it, whatever the other nodes know
  yet (a per-uid subscription made at connect time would still be in flight when the handshake goes out). The
  channel count stays bounded whatever the number of uids; the cost is that each worker receives every
  cross-node push (Redis's fan-out), and drops those for uids it does not hold.
* ``<prefix>:b:all``: broadcasts (every worker subscribes).
* ``<prefix>:presence``: presence changes, published by the Lua scripts (:mod:`.scripts`).

A message is a small header and the batch exactly as the sender packed it (nothing is re-encoded):
``b"S\\x01"``, flags (bit 0 ws, bit 1 ajax, bit 2 binary batch, bit 3 broadcast, bit 4 close), the length of
the node id, the sender's sequence number (8 bytes), the length of the uid's EDN (4 bytes), the node id, the
uid's EDN, the batch. Messages from the receiver's own node are ignored (its workers already got them through shared
memory); :class:`sente.Publisher` sends with an empty node id, so every node delivers those.

A *close* message (flag bit 4, no transport bits, empty batch) is Sente's ``[:chsk/close]`` for the uid, sent on
the uid's slot channel: every worker of another node that holds the uid (in its registered presence) closes its
own connections (``CorePeer.close_uid_here``); the others ignore it. It is not forwarded through shared memory
(each holder got it already). A node that predates the flag sees no transport bit and ignores it.

A batch for several uids (``publish_to``: a uid-list broadcast, or one batch that several uids' pushes share)
is one message per slot channel among them, not one per uid: flag bit 5 (*many*) says the uid field is an EDN
vector of the uids' EDN on that channel (``[k1 k2 ...]``); the receiver delivers to its own clients of any of
them.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import zlib
from typing import Any

from ... import edn
from ...protocol.backplane import Transport

MASKS: dict[str, int] = {"ws": 1, "ajax": 2, "any": 3}
TRANSPORT_BITS: tuple[tuple[Transport, int], ...] = (("ws", 1), ("ajax", 2))
BINARY, BROADCAST, CLOSE, MANY = 4, 8, 16, 32
MAGIC = b"S\x01"
HEADER = struct.Struct(">2sBBQI")  # magic, flags, node id length, sender seq, uid EDN length
SLOTS = 256


def channel_for(prefix: str, uid_key: bytes | None, slots: int = SLOTS) -> str:
    """The channel of a uid's batches (by its EDN), or the broadcast channel for None."""
    return f"{prefix}:b:all" if uid_key is None else f"{prefix}:b:{zlib.crc32(uid_key) % slots}"


def uid_key(uid: Any) -> bytes:
    """A uid as Redis knows it: its EDN text."""
    return edn.dumps(uid).encode()


def encode_message(node: bytes, seq: int, transports: int, uid: bytes | None, data: str | bytes) -> bytes:
    """One message: header, node id, uid EDN, the packed batch (see the module docstring); ``transports`` is
    a :data:`MASKS` value (with :data:`MANY` when ``uid`` is a vector of uids), or :data:`CLOSE` for a
    ``[:chsk/close]``."""
    flags = transports | (BINARY if isinstance(data, bytes) else 0) | (BROADCAST if uid is None else 0)
    key = b"" if uid is None else uid
    payload = data if isinstance(data, bytes) else data.encode()
    return HEADER.pack(MAGIC, flags, len(node), seq, len(key)) + node + key + payload


def decode_message(message: bytes) -> tuple[bytes, int, int, bytes | None, str | bytes]:
    """``(node, seq, transports, uid EDN or None, batch)`` (transports with :data:`CLOSE` for a close, with
    :data:`MANY` when the uid field is a vector of uids); ValueError if it is not one of ours."""
    magic, flags, node_len, seq, key_len = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise ValueError("not a sente message")
    i = HEADER.size
    node, key = message[i:i + node_len], message[i + node_len:i + node_len + key_len]
    raw = message[i + node_len + key_len:]
    data: str | bytes = raw if flags & BINARY else raw.decode()
    return node, seq, flags & (3 | CLOSE | MANY), None if flags & BROADCAST else key, data


def default_node_id(hint: str | None = None) -> str:
    """A node id unique to this process (or to ``hint``, e.g. the supervisor's shared-memory name) on this host."""
    tail = hint if hint is not None else f"{os.getpid()}-{os.urandom(4).hex()}"
    return re.sub(r"[\s|]", "_", f"{socket.gethostname()}-{tail}")


def keys(prefix: str) -> tuple[str, str, str]:
    """(members zset, sequence counter, presence channel)."""
    return f"{{{prefix}}}:members", f"{{{prefix}}}:seq", f"{prefix}:presence"
