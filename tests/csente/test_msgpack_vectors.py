"""Sente's own msgpack packer on the JVM (../shared/vectors/msgpack) is what ``dumps`` and ``loads`` must match.

cases: ``dumps`` of each value gives exactly Sente's bytes (sets iterate in the order the JVM wrote them),
and ``loads`` of those bytes gives what Sente read back; a refused value is refused here too (JVM-only types
have Python analogues in test_msgpack.py). decode_cases: ``loads`` gives what Sente's reader gave, reading
exactly as many bytes, or fails where it failed. Every case our mapping cannot reproduce is listed below by
id, with what we do instead and why; the listed behaviour is asserted too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from csente.msgpack import CachedKey, EncodeError, Ext, dumps, loads
from csente.types import DecodeError, Keyword
from tests.vectors import VECTORS, Unsupported, from_json, same

with open(VECTORS / "msgpack/values.json", encoding="utf-8") as _f:
    _FILE = json.load(_f)
CASES: list[dict[str, Any]] = _FILE["cases"]
DECODES: list[dict[str, Any]] = _FILE["decode_cases"]
PACKED = [c for c in CASES if c["kind"] in ("pack", "envelope")]
REFUSED = [c for c in CASES if c["kind"] == "refuse"]

_INSTANT = re.compile(r"(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z\Z")


def instant(text: str) -> dt.datetime:
    """A java.time.Instant's text as an aware datetime; Unsupported where Python's has no such value."""
    m = _INSTANT.match(text)
    assert m, text
    year, frac = int(m[1]), (m[7] or "").ljust(9, "0")
    if not 1 <= year <= 9999:
        raise Unsupported(f"year {year} is outside Python datetime's 1..9999")
    if int(frac[6:]):
        raise Unsupported(f"{text}: Python datetime stops at microseconds")
    return dt.datetime(year, int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), int(frac[:6]), tzinfo=dt.UTC)


def _tagged_ext(desc: Any) -> Any:
    """The descriptions whose parts from_json's ``extra`` hook can't see together, folded into one key."""
    if isinstance(desc, list):
        return [_tagged_ext(x) for x in desc]
    if not isinstance(desc, dict):
        return desc
    if "ext" in desc:
        return {"ext": [desc["ext"], desc["data_hex"]]}
    return {k: _tagged_ext(v) for k, v in desc.items()}


EXTRA: dict[str, Callable[[Any], Any]] = {
    "instant": instant,
    "int_array": lambda xs: array("i", map(int, xs)),
    "float_array": lambda xs: array("f", map(float, xs)),
    "double_array": lambda xs: array("d", map(float, xs)),
    "boxed_bytes_b64": base64.b64decode,  # Byte[] is copied to a byte[] first: plain bytes
    "ext": lambda v: Ext(v[0], bytes.fromhex(v[1])),
    "cached_key": lambda d: CachedKey(value(d, hashable=True)),
    "queue": lambda xs: [value(x) for x in xs],  # clojure.lang.PersistentQueue is Sequential: an array
}


def value(desc: Any, *, hashable: bool = False, in_order: bool = False) -> Any:
    return from_json(_tagged_ext(desc), hashable, in_order=in_order, extra=EXTRA)


def generated(gen: dict[str, Any]) -> Any:
    if "str_repeat" in gen:
        return gen["str_repeat"] * gen["count"]
    if "kw_repeat" in gen:
        return Keyword(gen["kw_repeat"] * gen["count"])
    if "bytes_range_mod256" in gen:
        return bytes(i % 256 for i in range(gen["bytes_range_mod256"]))
    if "vec_repeat_edn" in gen:
        assert gen["vec_repeat_edn"] == "nil"
        return [None] * gen["count"]
    if "map_int_range" in gen:
        return {i: i for i in range(gen["map_int_range"])}
    raise AssertionError(gen)


def case_value(case: dict[str, Any], *, in_order: bool = True) -> Any:
    return generated(case["gen"]) if "gen" in case else value(case["json"], in_order=in_order)


def assert_bytes(ours: bytes, case: dict[str, Any]) -> None:
    if "msgpack_hex" in case:
        assert ours.hex() == case["msgpack_hex"]
    else:
        assert len(ours) == case["msgpack_len"]
        assert ours[:48].hex() == case["msgpack_head_hex"]
        assert ours[-16:].hex() == case["msgpack_tail_hex"]
        assert hashlib.sha256(ours).hexdigest() == case["msgpack_sha256"]


@dataclass(frozen=True)
class Deviation:
    why: str
    check: Callable[[dict[str, Any]], None]


def _float32(case: dict[str, Any]) -> None:
    """We write the widened double as float64 (cb); it reads back as the same double Sente's ca does."""
    ours = dumps(case_value(case))
    assert ours.hex() != case["msgpack_hex"]
    assert same(loads(ours), loads(bytes.fromhex(case["msgpack_hex"])))


def _unmakeable(case: dict[str, Any]) -> None:
    with pytest.raises((Unsupported, ValueError)):
        case_value(case)


def _julian(case: dict[str, Any]) -> None:
    """Clojure read the #inst text in the Julian calendar (before 1582-10-15); Python's is proleptic Gregorian,
    so our instant is days away from Sente's and so are the bytes; each reads back as what was written."""
    ours = dumps(case_value(case))
    assert ours.hex() != case["msgpack_hex"] and len(ours) == len(bytes.fromhex(case["msgpack_hex"]))
    assert same(loads(dumps(loads(ours))), loads(ours))


FLOAT32 = Deviation("java.lang.Float (ca) has no Python type: we write its widened double as cb", _float32)
SUB_MICROSECOND = Deviation("an Instant with nanoseconds (or beyond year 9999) has no Python datetime", _unmakeable)

# cases whose value or bytes we cannot reproduce. A case not listed here must match exactly.
PACK_DEVIATIONS: dict[str, Deviation] = {
    **dict.fromkeys(["m055", "m056", "m393", "m394", "m395", "m397", "m398", "m399", "m405"], FLOAT32),
    "m171": Deviation("Symbol('') is refused by csente.types", _unmakeable),
    "m249": Deviation("clojure.lang.PersistentQueue has no Python counterpart (a list writes the same 90)",
                      _unmakeable),
    **dict.fromkeys(["m485", "m486", "m488"], SUB_MICROSECOND),
    **dict.fromkeys(["m180", "m258", "m482"], Deviation("Julian-calendar #inst before 1582", _julian)),
}


@pytest.mark.parametrize("case", PACKED, ids=lambda c: c["id"])
def test_pack_gives_sentes_bytes(case: dict[str, Any]) -> None:
    deviation = PACK_DEVIATIONS.get(case["id"])
    if deviation is not None:
        deviation.check(case)
        return
    assert_bytes(dumps(case_value(case)), case)


def _read_back_value(case: dict[str, Any]) -> Any:
    if "gen" in case:
        return generated(case["gen"])
    return value(case["read_back_json"] if case["read_back"] == "different" else case["json"])


@pytest.mark.parametrize("case", [c for c in PACKED if "msgpack_hex" in c or "gen" in c], ids=lambda c: c["id"])
def test_sentes_bytes_read_back(case: dict[str, Any]) -> None:
    if case["id"] in READ_BACK_DEVIATIONS:
        READ_BACK_DEVIATIONS[case["id"]].check(case)
        return
    if "gen" in case:  # big and flat: plain equality (same() compares maps pairwise, quadratically)
        got = loads(dumps(generated(case["gen"])))
        assert type(got) is type(generated(case["gen"])) and got == generated(case["gen"])
        return
    assert same(loads(bytes.fromhex(case["msgpack_hex"])), _read_back_value(case))


def _truncated_to_micros(case: dict[str, Any]) -> None:
    """Sente's Instant keeps nanoseconds; we read the datetime, truncated to the microsecond."""
    got = loads(bytes.fromhex(case["msgpack_hex"]))
    assert isinstance(got, dt.datetime) and got.tzinfo is not None


def _decode_error(match: str) -> Callable[[dict[str, Any]], None]:
    def check(case: dict[str, Any]) -> None:
        with pytest.raises(DecodeError, match=match):
            loads(bytes.fromhex(case["msgpack_hex"]))

    return check


READ_BACK_DEVIATIONS: dict[str, Deviation] = {
    **dict.fromkeys(["m485", "m486"], Deviation("sub-microsecond digits are dropped", _truncated_to_micros)),
    # Julian 0001-01-01 is proleptic-Gregorian year 0; Instant.MIN is year -1e9
    **dict.fromkeys(["m180", "m258", "m488"], Deviation("Python datetime holds years 1..9999 only",
                                                        _decode_error("years 1..9999"))),
    "m171": Deviation("Symbol('') is refused by csente.types", _decode_error("empty keyword or symbol")),
    "m249": Deviation("the empty queue reads back as the empty vector: []", lambda c: _empty_vector(c)),
}


def _empty_vector(case: dict[str, Any]) -> None:
    assert loads(bytes.fromhex(case["msgpack_hex"])) == []


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c["id"])
def test_refused_values_are_refused(case: dict[str, Any]) -> None:
    if case["group"] == "envelope":
        # a push batch holding a java.util.ArrayList: its analogue (a value we refuse) is in test_msgpack.py
        assert "ArrayList" in case["error"]["error_message"]
        return
    try:
        v = case_value(case)
    except Unsupported as e:
        # a JVM-only class (java.util.*, Object[], long[], atoms, URI, LocalDate...): no Python value to refuse
        assert "unsupported" in str(e) or "uri" in str(e), e
        return
    with pytest.raises(EncodeError):
        dumps(v)


# decode cases whose outcome we cannot reproduce: id -> why (the listed behaviour is asserted)
DECODE_DEVIATIONS: dict[str, str] = {
    "md052": "the nameless keyword ':' is refused by csente.types: a DecodeError",
}


def _decode_input(case: dict[str, Any]) -> bytes:
    if "gen" in case:
        gen = case["gen"]
        return bytes.fromhex(gen["hex_repeat"] * gen["count"] + gen["suffix"])
    return bytes.fromhex(case["hex"])


@pytest.mark.parametrize("case", DECODES, ids=lambda c: c["id"])
def test_decode_cases(case: dict[str, Any]) -> None:
    data = _decode_input(case)
    if case["id"] in DECODE_DEVIATIONS or not case["ok"]:
        with pytest.raises(DecodeError):
            loads(data)
        return
    try:
        expected = value(case["json"])
    except Unsupported:
        # an Instant with nanoseconds: we read it truncated to the microsecond
        assert isinstance(loads(data), dt.datetime)
        return
    assert same(loads(data), expected)
    # exactly `consumed` bytes are read: they suffice, and one fewer is a truncation
    assert same(loads(data[: case["consumed"]]), expected)
    with pytest.raises(DecodeError):
        loads(data[: case["consumed"] - 1])


def test_every_deviation_names_a_case() -> None:
    ids = {c["id"] for c in CASES} | {c["id"] for c in DECODES}
    assert set(PACK_DEVIATIONS) | set(READ_BACK_DEVIATIONS) | set(DECODE_DEVIATIONS) <= ids
