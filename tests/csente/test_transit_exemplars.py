"""The transit-format exemplars (../shared/vectors/transit-format-exemplars/examples/0.8/simple) read and write.

Each exemplar gives one value as EDN and as transit json, json-verbose and msgpack, all written by
transit-clj. All three must read back as the EDN value, and our own encodings must be exactly the exemplar
bytes, except where the value holds a set of two or more members: Python sets iterate in their own order, so
there we require that our encoding reads back the same and has the same length.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from csente.edn import loads as edn_loads
from csente.transit import URI, dumps, dumps_msgpack, loads, loads_msgpack
from csente.types import Keyword, Symbol, TaggedValue
from tests.vectors import VECTORS, same

SIMPLE = VECTORS / "transit-format-exemplars" / "examples" / "0.8" / "simple"
NAMES = sorted(p.stem for p in SIMPLE.glob("*.edn"))

# The EDN of this exemplar only prints the JVM objects (#object[...TaggedValueImpl ...]); its value is two
# tagged values without handlers, as the transit files show.
BY_HAND: dict[str, Any] = {
    "maps_unrecognized_keys": [
        TaggedValue("abcde", Keyword("anything")),
        TaggedValue("fghij", Keyword("anything-else")),
    ],
}

# Deviations: in Python 1 == True and 0 == False, so a set holding both (as these exemplars' sets do) keeps
# only the first of each pair, here the ints; the EDN reader refuses such a set as holding duplicates. What
# we read instead, and our encodings of it need only read back the same.
_MIXED = frozenset([None, 0, 2.0, "~eight", 1, "five", Symbol("seven"), Keyword("six")])
DEVIATIONS: dict[str, Any] = {
    "set_mixed": _MIXED,
    "set_nested": frozenset([frozenset([1, 3, 2]), _MIXED]),
}


def _jvm_object(form: Any) -> Any:
    """``#object[java.net.URI 0x... "text"]`` as printed by Clojure; only URIs occur in the exemplars."""
    assert form[0] == Symbol("java.net.URI"), form
    return URI(form[2])


@functools.cache
def edn_value(name: str) -> Any:
    if name in DEVIATIONS:
        return DEVIATIONS[name]
    if name in BY_HAND:
        return BY_HAND[name]
    return edn_loads((SIMPLE / f"{name}.edn").read_text(encoding="utf-8"), tag_readers={"object": _jvm_object})


def has_multi_member_set(value: Any) -> bool:
    if isinstance(value, frozenset):
        return len(value) > 1 or any(has_multi_member_set(x) for x in value)
    if isinstance(value, dict):
        return any(has_multi_member_set(k) or has_multi_member_set(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_multi_member_set(x) for x in value)
    return False


def equal(a: Any, b: Any) -> bool:
    """``same``, with maps matched key by key through a lookup (the 1935-key exemplars are too big for
    ``same``'s pairwise search)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys_b = {k: k for k in b}
        return len(a) == len(b) and all(
            k in keys_b and same(k, keys_b[k]) and equal(v, b[keys_b[k]]) for k, v in a.items()
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return all(equal(x, y) for x, y in zip(a, b, strict=True))
    return same(a, b)


def read_file(path: Path) -> Any:
    return loads_msgpack(path.read_bytes()) if path.suffix == ".mp" else loads(path.read_bytes())


@pytest.mark.parametrize("suffix", [".json", ".verbose.json", ".mp"])
@pytest.mark.parametrize("name", NAMES)
def test_exemplar_reads_as_its_edn_value(name: str, suffix: str) -> None:
    assert equal(read_file(SIMPLE / f"{name}{suffix}"), edn_value(name))


@pytest.mark.parametrize("suffix", [".json", ".verbose.json", ".mp"])
@pytest.mark.parametrize("name", NAMES)
def test_our_encoding_is_the_exemplar(name: str, suffix: str) -> None:
    value = edn_value(name)
    expected = (SIMPLE / f"{name}{suffix}").read_bytes()
    if suffix == ".mp":
        ours, back = dumps_msgpack(value), loads_msgpack
    else:
        text = dumps(value, verbose=suffix == ".verbose.json")
        ours, back = text.encode("utf-8"), loads
    if name in DEVIATIONS:
        assert equal(back(ours), value)
    elif has_multi_member_set(value):
        assert equal(back(ours), value)
        assert len(ours) == len(expected)
    else:
        assert ours == expected
