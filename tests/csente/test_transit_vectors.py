"""transit-clj's own output (../shared/vectors/transit/transit-json.json) is what we must write and read.

Every case: ``dumps`` gives exactly the transit-json and json-verbose text transit-clj 1.1.357 wrote, and
``loads`` of either text gives the value back (or what transit-clj itself reads back, where it differs).
Python sets have no order of their own, so the writing tests hand the codec a frozenset that iterates in the
order transit-clj printed; everything else is the plain value ``from_json`` builds.
"""

from __future__ import annotations

from typing import Any

import pytest

from csente.transit import URI, dumps, loads
from tests.vectors import Unsupported, from_json, load_cases, same

CASES = load_cases("transit/transit-json.json")

# Cases whose value has no Python counterpart in our mapping: id -> (the value we write instead, our exact
# transit-json output). A new unsupported description fails the tests until it is listed here; the current
# corpus has none (java.net.URI, the one JVM type outside tests.vectors, maps to csente.transit.URI below).
DEVIATIONS: dict[str, tuple[Any, str]] = {}


def value_of(desc: Any, in_order: bool = False) -> Any:
    """``from_json``, plus java.net.URI; ``in_order`` makes sets iterate in the order the description lists."""
    return from_json(desc, in_order=in_order, extra={"uri": URI})


def expected_read(case: dict[str, Any]) -> Any:
    """What transit-clj reads back from its own output: the value itself unless the case says otherwise."""
    if case.get("read_back") != "equal" and "read_back_json" in case:
        return value_of(case["read_back_json"])
    return value_of(case["json"])


def supported(case: dict[str, Any]) -> Any:
    """The value to write, sets in transit-clj's order; skips (only) the cases listed in DEVIATIONS."""
    try:
        return value_of(case["json"], in_order=True)
    except Unsupported:
        assert case["id"] in DEVIATIONS, f"{case['id']}: no Python value for {case['json']}; list it in DEVIATIONS"
        pytest.skip(f"{case['id']} is checked by test_deviations")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_dumps_writes_exactly_transit_clj_json(case: dict[str, Any]) -> None:
    assert dumps(supported(case)) == case["transit_json"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_dumps_verbose_writes_exactly_transit_clj_json_verbose(case: dict[str, Any]) -> None:
    assert dumps(supported(case), verbose=True) == case["transit_json_verbose"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
@pytest.mark.parametrize("field", ["transit_json", "transit_json_verbose"])
def test_loads_reads_what_transit_clj_reads(case: dict[str, Any], field: str) -> None:
    supported(case)
    assert same(loads(case[field]), expected_read(case))
    assert same(loads(case[field].encode("utf-8")), expected_read(case))


def test_deviations_are_unsupported_cases_written_as_documented() -> None:
    by_id = {c["id"]: c for c in CASES}
    for case_id, (ours, text) in DEVIATIONS.items():
        with pytest.raises(Unsupported):
            value_of(by_id[case_id]["json"])
        assert dumps(ours) == text
