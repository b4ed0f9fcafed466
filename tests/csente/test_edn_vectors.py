"""The real Clojure printer and reader (../shared/vectors/edn) are what ``dumps`` and ``loads`` must match.

values.json: ``dumps`` of each value gives exactly Clojure's ``pr-str`` text (and the ``#:ns{}`` text with
``namespace_maps=True``), and text that Clojure reads back equal reads back to the same value here.
read.json: ``loads`` of each input gives what tools.reader 1.3.6 (Sente's reader) gives, or fails where it fails;
where a case has no ``tools_reader_edn`` outcome, tools.reader agrees with ``clojure_edn``.

Python sets have no order of their own, so the exact-text tests hand ``dumps`` a frozenset that iterates in
the order Clojure printed; doubles may differ in digits only where the value reads back identical (Java 17's
``Double.toString`` is not always the shortest form; we print the shortest).
Every value or outcome our mapping cannot reproduce is listed below with what we do instead, and why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from csente.edn import dumps, loads
from csente.types import DecodeError
from tests.vectors import Unsupported, from_json, load_cases, same

VALUES = load_cases("edn/values.json")
READS = load_cases("edn/read.json")
READ_BACK = [case for case in VALUES if case["read_back"] == "equal"]

DOUBLE = re.compile(r"(?<![\w.#])-?\d+\.\d+(?:E-?\d+)?")


def drop_small_bigint_n(edn: str) -> str:
    """Clojure's text with the ``N`` removed from BigInts that fit in a long: Python has one int type, and
    only ints outside 64 bits need ``N`` to read back as the same number."""
    return re.sub(r"(?<![\w.])(-?\d+)N", lambda m: m[1] if -(2**63) <= int(m[1]) < 2**63 else m[0], edn)


DESCRIBED: Any = object()  # a deviation's value is the case's own value


@dataclass(frozen=True)
class Deviation:
    why: str
    ours: Callable[[str], str] | None  # Clojure's text -> our exact text; None: the value can't be made here
    value: Any = DESCRIBED  # what we write instead, where the description has no Python value


# fmt: off
SMALL_BIGINT_CASES = ["v026", "v027", "v028", "v029", "v030", "v249", "v321", "v335", "v347", "v348", "v353",
                      "v356", "v365", "v395", "v399", "v400", "v401", "v413", "v417"]
# fmt: on
SMALL_BIGINT = Deviation("a BigInt within 64 bits is a plain int here, so it prints without N", drop_small_bigint_n)

# values.json cases we print differently. A case whose description has no Python value fails until listed here.
VALUE_DEVIATIONS: dict[str, Deviation] = {
    **dict.fromkeys(SMALL_BIGINT_CASES, SMALL_BIGINT),
    # java.math.BigInteger prints without N even outside 64 bits (and reads back as a BigInt).
    "v036": Deviation("a BigInteger outside 64 bits is an int here, printed with N", lambda edn: edn + "N"),
    # java.lang.Float 0.1f: the description holds its widened double; Python has no single-precision float.
    "v067": Deviation("no Float type: we print the widened double", lambda edn: "0.10000000149011612"),
    # The nameless keyword and symbol (printed ":" and ""): csente.types refuses to make them.
    "v177": Deviation("Keyword('') is refused by csente.types", None),
    "v216": Deviation("Symbol('') is refused by csente.types", None),
    "v311": Deviation("clojure.lang.PersistentQueue has no Python counterpart", None),
    "v314": Deviation("java.util.ArrayList [1 2] is a plain list here, printed alike", lambda edn: edn, [1, 2]),
}

# values.json cases with read_back "equal" that we don't read back: id -> why. clojure.edn made read_back;
# Sente reads with tools.reader, which rejects keywords and symbols with two slashes (read.json r108, r121).
READ_BACK_DEVIATIONS = {
    case_id: "tools.reader rejects :a/b/c and a/b/c, which clojure.edn accepted"
    for case_id in ["v335", "v355", "v365", "v373", "v382", "v387", "v388"]
}

# read.json cases whose outcome we can't reproduce: id -> why. Our outcome is a DecodeError in each.
READ_DEVIATIONS = {
    "r159": "#{1 1.0} has two members in Clojure, but 1 == 1.0 in a Python set: a duplicate, so an error",
}


def same_text_but_double_digits(ours: str, clojure: str) -> bool:
    """Equal, or equal once every double is replaced by the float it reads as."""

    def normalized(text: str) -> str:
        return DOUBLE.sub(lambda m: repr(float(m[0])), text)

    return ours == clojure or normalized(ours) == normalized(clojure)


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["id"] for case in cases]


@pytest.mark.parametrize("case", VALUES, ids=ids(VALUES))
def test_dumps_prints_like_pr_str(case: dict[str, Any]) -> None:
    deviation = VALUE_DEVIATIONS.get(case["id"])
    if deviation is not None and deviation.ours is None:
        with pytest.raises((Unsupported, ValueError)):
            from_json(case["json"])
        return
    described = deviation is None or deviation.value is DESCRIBED
    value = from_json(case["json"], in_order=True) if described else deviation.value
    for namespace_maps, key in ((False, "edn"), (True, "edn_print_namespace_maps")):
        expected = case.get(key, case["edn"])
        if deviation is not None:
            assert deviation.ours is not None
            expected = deviation.ours(expected)
        out = dumps(value, namespace_maps=namespace_maps)
        assert same_text_but_double_digits(out, expected), (out, expected)


@pytest.mark.parametrize("case", VALUES, ids=ids(VALUES))
def test_dumps_of_plain_value_differs_only_in_set_order(case: dict[str, Any]) -> None:
    try:
        value = from_json(case["json"])
    except (Unsupported, ValueError):
        assert case["id"] in VALUE_DEVIATIONS, "a value with no Python counterpart must be listed"
        return
    assert sorted(dumps(value)) == sorted(dumps(from_json(case["json"], in_order=True)))


@pytest.mark.parametrize("case", READ_BACK, ids=ids(READ_BACK))
def test_what_clojure_reads_back_reads_back(case: dict[str, Any]) -> None:
    if case["id"] in READ_BACK_DEVIATIONS:
        with pytest.raises(DecodeError):
            loads(case["edn"])
        return
    assert same(loads(case["edn"]), from_json(case["json"]))


@pytest.mark.parametrize("case", READS, ids=ids(READS))
def test_loads_reads_like_tools_reader(case: dict[str, Any]) -> None:
    expected = case.get("tools_reader_edn", case["clojure_edn"])
    if expected["ok"] and case["id"] not in READ_DEVIATIONS:
        assert same(loads(case["input"]), from_json(expected["json"]))
    else:
        with pytest.raises(DecodeError):
            loads(case["input"])


@pytest.mark.parametrize("case", READS, ids=ids(READS))
def test_loads_of_utf8_bytes_is_loads_of_text(case: dict[str, Any]) -> None:
    expected = case.get("tools_reader_edn", case["clojure_edn"])
    if expected["ok"] and case["id"] not in READ_DEVIATIONS:
        assert same(loads(case["input"].encode()), loads(case["input"]))
    else:
        with pytest.raises(DecodeError):
            loads(case["input"].encode())


def test_every_deviation_names_a_real_case() -> None:
    value_ids, read_ids = set(ids(VALUES)), set(ids(READS))
    assert set(VALUE_DEVIATIONS) <= value_ids
    assert set(READ_BACK_DEVIATIONS) <= value_ids
    assert set(READ_DEVIATIONS) <= read_ids
