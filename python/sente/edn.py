"""EDN as Sente's default packer writes and reads it (Clojure's ``pr-str`` and tools.reader's EDN reader).

Mapping: nil↔None, booleans, integers (``N`` bigints too)↔int, doubles↔float, ratios↔Fraction,
``M``↔Decimal, strings↔str, vectors↔list (tuple where a hashable value is needed), lists↔List,
sets↔frozenset, maps↔dict (FrozenDict where hashable), ``#uuid``↔UUID, ``#inst``↔aware datetime,
keywords↔Keyword, symbols↔Symbol, chars↔Char, unknown tags↔TaggedValue (with ``default=TaggedValue``).
"""

from csente.edn import dumps, loads
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue

__all__ = ["Char", "DecodeError", "FrozenDict", "Keyword", "List", "Symbol", "TaggedValue", "dumps", "loads"]
