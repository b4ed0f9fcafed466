"""MessagePack as Sente's msgpack packer writes and reads it (``taoensso.sente.packers.msgpack``, Sente 1.21+).

Mapping: nil↔None, booleans, 64-bit integers↔int (an int beyond is refused), doubles↔float (float32 reads
widened), strings↔str, bin↔bytes, arrays↔list (tuple where a hashable value is needed; List and tuple are
written as arrays), maps↔dict (FrozenDict where hashable), keywords↔Keyword, symbols↔Symbol, chars↔Char,
ratios↔Fraction, sets↔frozenset, int[]/float[]/double[]↔``array.array`` of typecode i/f/d, instants↔aware
datetime (microseconds), UUIDs↔UUID, unknown ext types↔Ext; Decimal is written as a double, as BigDecimal
is. Map keys that are keywords or strings go through Sente's per-message key cache. Unsupported values raise
EncodeError before anything is written; bad input raises DecodeError.
"""

from csente.msgpack import CachedKey, EncodeError, Ext, dumps, loads
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol

__all__ = [
    "CachedKey",
    "Char",
    "DecodeError",
    "EncodeError",
    "Ext",
    "FrozenDict",
    "Keyword",
    "List",
    "Symbol",
    "dumps",
    "loads",
]
