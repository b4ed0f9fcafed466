"""MessagePack as Sente's msgpack packer writes and reads it: ext types and the map-key cache (see msgpack.pyx)."""

from csente.msgpack_reader import CachedKey as CachedKey
from csente.msgpack_reader import loads as loads
from csente.msgpack_writer import EncodedEvent as EncodedEvent
from csente.msgpack_writer import EncodeError as EncodeError
from csente.msgpack_writer import Ext as Ext
from csente.msgpack_writer import dumps as dumps
from csente.msgpack_writer import encode_event as encode_event
from csente.msgpack_writer import pack_batch as pack_batch

__all__ = ["CachedKey", "EncodeError", "EncodedEvent", "Ext", "dumps", "encode_event", "loads", "pack_batch"]
