"""Read the golden vectors in ../shared/vectors in place and turn their tagged JSON into Python values.

The tagged JSON description is defined in ../shared/vectors/edn/README.md. ``from_json`` builds the value
our codecs should produce for a description; ``same`` compares type-exactly (a float is not an int, a
list is not a List), order-insensitively for sets and maps, with NaN equal to NaN and -0.0 unlike 0.0.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from csente.types import Char, FrozenDict, Keyword, List, Symbol, TaggedValue

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
VECTORS = SHARED / "vectors"
if not VECTORS.is_dir():  # a clone without the shared material beside it: its tests skip (CI refuses to run so)
    pytest.skip(f"the golden vectors are not at {VECTORS} (../shared beside the checkout)", allow_module_level=True)


class Unsupported(Exception):
    """The description names a JVM value that has no Python counterpart in our mapping."""


def load_cases(relative: str) -> list[dict[str, Any]]:
    """The ``cases`` list of a vectors file, e.g. ``load_cases("edn/values.json")``."""
    with open(VECTORS / relative, encoding="utf-8") as f:
        return list(json.load(f)["cases"])


def _named(desc: dict[str, Any], key: str) -> str:
    return f"{desc['ns']}/{desc[key]}" if "ns" in desc else str(desc[key])


class InOrder(frozenset[Any]):
    """A frozenset that iterates in a given order: the order the JVM's hash set printed its members."""

    order: list[Any]

    def __new__(cls, items: Iterable[Any]) -> InOrder:
        items = list(items)
        made = super().__new__(cls, items)
        made.order = items
        return made

    def __iter__(self) -> Iterator[Any]:
        return iter(self.order)


def from_json(
    desc: Any,
    hashable: bool = False,
    *,
    in_order: bool = False,
    extra: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Any:
    """The Python value for a tagged JSON description; ``hashable`` where Python needs one (keys, members).

    ``in_order`` makes sets InOrder, iterating as the description lists them (the order the JVM printed);
    ``extra`` maps further description keys to the type a codec reads them as (transit's ``{"uri": URI}``).
    """
    again = partial(from_json, in_order=in_order, extra=extra)
    if desc is None or isinstance(desc, (bool, str)):
        return desc
    assert isinstance(desc, dict), desc
    if "int" in desc:
        return int(desc["int"])
    if "bigint" in desc:
        return int(desc["bigint"])
    if "double" in desc:
        return float(desc["double"])
    if "ratio" in desc:
        return Fraction(int(desc["ratio"][0]), int(desc["ratio"][1]))
    if "decimal" in desc:
        return Decimal(desc["decimal"])
    if "char" in desc:
        return Char(desc["char"])
    if "kw" in desc:
        return Keyword(_named(desc, "kw"))
    if "sym" in desc:
        return Symbol(_named(desc, "sym"))
    if "list" in desc:
        return List(again(x, hashable) for x in desc["list"])
    if "vec" in desc:
        items = [again(x, hashable) for x in desc["vec"]]
        return tuple(items) if hashable else items
    if "set" in desc:
        members = (again(x, True) for x in desc["set"])
        return InOrder(members) if in_order else frozenset(members)
    if "map" in desc:
        pairs = ((again(k, True), again(v, hashable)) for k, v in desc["map"])
        return FrozenDict(pairs) if hashable else dict(pairs)
    if "uuid" in desc:
        return uuid.UUID(desc["uuid"])
    if "inst" in desc:
        return dt.datetime.fromisoformat(desc["inst"].replace("Z", "+00:00"))
    if "tagged" in desc:
        return TaggedValue(desc["tagged"], again(desc["value"], hashable))
    if "bytes_b64" in desc:
        return base64.b64decode(desc["bytes_b64"])
    for key, make in (extra or {}).items():
        if key in desc:
            return make(desc[key])
    raise Unsupported(json.dumps(desc))


def same(a: Any, b: Any) -> bool:
    """Type-exact equality: what Clojure's = would say, plus Python type identity at every level."""
    if type(a) is not type(b):
        # vectors may come back as list or tuple depending on position; both mean "vector"
        if {type(a), type(b)} <= {list, tuple}:
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if {type(a), type(b)} <= {dict, FrozenDict}:
            return _same_map(a, b)
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return _same_map(a, b)
    if isinstance(a, frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, TaggedValue):
        return a.tag == b.tag and same(a.value, b.value)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    return bool(a == b)


def _same_map(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    if len(a) != len(b):
        return False
    return all(any(same(ka, kb) and same(va, vb) for kb, vb in b.items()) for ka, va in a.items())
