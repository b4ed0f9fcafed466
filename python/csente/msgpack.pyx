"""MessagePack exactly as Sente's msgpack packer (1.21+, ``taoensso.msgpack``) writes and reads it.

Standard MessagePack plus Sente's ext types (0 keyword, 1 symbol, 2 char, 3 ratio, 4 set, 5/6/7 int[]/
float[]/double[], -1 timestamp in its 12-byte form, 9 uuid) and the map-key cache (ext 8): within one
top-level value, a keyword or string map key already written is written again as ``d4 08 <index>``, for
the first 256 such keys. The cache spans a whole envelope, so a push batch shares it (see
:func:`encode_event` / :func:`pack_batch`).

Mapping (as the edn and transit codecs): nil↔None, booleans, ints (64-bit; a uint64 above 2^63 reads as
int)↔int, float64↔float (float32 reads widened), str↔str, bin↔bytes, arrays↔list (tuple where hashable),
maps↔dict (FrozenDict where hashable), ext 0 Keyword, 1 Symbol, 2 Char, 3 Fraction, 4 frozenset,
5/6/7 ``array.array`` of typecode i/f/d, -1 aware datetime (UTC), 9 UUID, unknown ext types ↔ :class:`Ext`.
Written only: List, tuple, set and other Mappings/Sets (as their kind), Decimal (as a float64, as
BigDecimal is), Fraction with denominator 1 (an int). Anything else is an :class:`EncodeError`, raised
before any output exists.

The Python face of the codec: the writer (``dumps``, ``encode_event``, ``pack_batch``, ``Ext``,
``EncodeError``) is msgpack_writer, the reader (``loads``, ``CachedKey``) msgpack_reader.
"""

from csente.msgpack_reader import CachedKey, loads
from csente.msgpack_writer import EncodedEvent, EncodeError, Ext, dumps, encode_event, pack_batch

__all__ = ["CachedKey", "EncodeError", "EncodedEvent", "Ext", "dumps", "encode_event", "loads", "pack_batch"]
