"""Transit as Sente's transit packer writes and reads it (transit-clj 1.1.357), over JSON, json-verbose and msgpack.

Mapping: nil↔None, booleans, integers↔int (beyond ±2^53 as ``"~i"``, beyond 64 bits ``"~n"``), doubles↔float
(NaN/±Inf as ``"~z"``), ratios↔Fraction, BigDecimal ``"~f"``↔Decimal, strings↔str, keywords ``"~:"``↔Keyword,
symbols ``"~$"``↔Symbol, chars ``"~c"``↔Char, ``"~u"``↔UUID, instants ``"~m"``/``"~t"``↔aware datetime,
``"~r"``↔URI, ``"~b"``↔bytes, arrays↔list (tuple where a hashable value is needed), ``list``↔List,
``set``↔frozenset (set written too), maps↔dict (FrozenDict where hashable; ``cmap`` for non-string keys),
tags without a handler↔TaggedValue. Write caching, quoting of top-level scalars and the output bytes match
transit-clj; bad input raises DecodeError.
"""

from csente.transit import URI, WriteHandler, dumps, dumps_msgpack, loads, loads_msgpack
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue

__all__ = [
    "URI",
    "Char",
    "DecodeError",
    "FrozenDict",
    "Keyword",
    "List",
    "Symbol",
    "TaggedValue",
    "WriteHandler",
    "dumps",
    "dumps_msgpack",
    "loads",
    "loads_msgpack",
]
