"""csente.msgpack beyond the golden vectors: the mapping of Python values, refusals (nothing is written),
untrusted input (lengths, depth, every bad input a DecodeError), and push batches sharing one key cache."""

from __future__ import annotations

import datetime as dt
import uuid
from array import array
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from csente.msgpack import CachedKey, EncodeError, Ext, dumps, encode_event, loads, pack_batch
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue

K = Keyword


def test_python_values_map_like_edn_and_transit() -> None:
    value = {
        K("a"): [None, True, False, 1, -1, 1.5, "é", b"\x00", Symbol("s/y"), Char("c")],
        "s": frozenset({1}),
        K("r"): Fraction(1, 3),
        K("u"): uuid.UUID(int=1),
        K("t"): dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        K("arrays"): [array("i", [1, -2]), array("f", [1.5]), array("d", [0.1])],
        (1, 2): {K("k"): [3]},  # a map value, so a plain dict (FrozenDict and tuples only where hashable)
        FrozenDict({K("k"): (3,)}): 1,
    }
    assert loads(dumps(value)) == value


def test_written_as_their_kind() -> None:
    # a List, a set, any Mapping, a Decimal (as BigDecimal's double), a whole Fraction (an int)
    assert dumps(List([1, 2])) == dumps([1, 2]) == dumps((1, 2))
    assert loads(dumps({1})) == frozenset({1})
    assert dumps(Decimal("1.5")) == dumps(1.5) and dumps(Decimal("-0")) == dumps(0.0)
    assert dumps(Fraction(4, 2)) == dumps(2)
    assert dumps(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == dumps(
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    )


def test_unknown_ext_round_trips() -> None:
    assert loads(dumps(Ext(42, b"\x01"))) == Ext(42, b"\x01")
    assert dumps(Ext(-2, b"ab")).hex() == "d5fe6162"


@pytest.mark.parametrize(
    "value",
    [
        object(),
        TaggedValue("foo/bar", 1),  # clojure.lang.TaggedLiteral: refused by Sente
        2**63,
        -(2**63) - 1,
        Fraction(2**64, 3),
        dt.datetime(2024, 1, 1),  # naive: no instant
        Decimal("NaN"),
        array("q", [1]),  # long[]: refused by Sente
        array("b", [1]),
        Ext(8, b"\x00"),  # the cache's own type
        CachedKey("a"),
        [1, {K("a"): [object()]}],  # deep inside: the whole value is refused
        range(3),
    ],
    ids=repr,
)
def test_refused_values_raise_encode_error(value: Any) -> None:
    with pytest.raises(EncodeError, match="Pack failed"):
        dumps(value)
    with pytest.raises(EncodeError):
        encode_event([K("a/b"), value])


def test_circular_structure_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nesting"):
        dumps(loop)


def test_lone_surrogates_are_written_as_question_marks_and_pairs_as_one_char() -> None:
    assert dumps("a\ud800b").hex() == "a3613f62"
    assert loads(dumps("\ud83d\ude00")) == "😀"


@pytest.mark.parametrize(
    "hex_input",
    [
        "c67fffffff",  # bin32 claiming 2 GiB in a 5-byte frame: refused before allocating
        "db7fffffff",
        "c97fffffff00",
        "ddffffffff",
        "dfffffffff",
        "c70cff",
        "d40405",
        "c1",
        "",
        "92c0",
        "d60000",  # keyword ext cut short
        "c8ffff00",
        "d502",
        "c70002",
        "d5030100",  # ratio n/0
        "d50301c0",  # ratio with a non-number
        "d6ff00000001",  # 4-byte timestamp: Sente reads only the 12-byte form
        "c720093636643936616234393833343430646261336364343262333631353033616239",  # uuid without dashes
        "82c3c001c0",  # true and 1: distinct in Clojure, one key in Python
        "d50492c301",  # the same for a set
        "81d7050000000100000002c0",  # an int[] as a map key: not hashable here
    ],
)
def test_bad_input_is_a_decode_error(hex_input: str) -> None:
    with pytest.raises(DecodeError):
        loads(bytes.fromhex(hex_input))


def test_depth_and_size_are_bounded() -> None:
    deep = b"\x91" * 300 + b"\xc0"
    with pytest.raises(DecodeError, match="max_depth"):
        loads(deep)
    assert loads(deep, max_depth=301) is not None
    with pytest.raises(DecodeError, match="max_size"):
        loads(b"\xc0" * 11, max_size=10)
    with pytest.raises(DecodeError, match="max_depth"):
        loads(nested_sets(300))  # nesting through set payloads counts too
    assert loads(nested_sets(100)) is not None


def nested_sets(depth: int) -> bytes:
    data = b"\xc0"
    for _ in range(depth):
        payload = b"\x91" + data
        data = b"\xc9" + len(payload).to_bytes(4, "big") + b"\x04" + payload
    return data


def test_trailing_bytes_are_ignored_like_a_padded_browser_body() -> None:
    assert loads(bytes.fromhex("92c0c0") + bytes(1000)) == [None, None]


def test_cache_reference_outside_key_position_reads_as_cached_key() -> None:
    assert loads(bytes.fromhex("9281a16101d40800")) == [{"a": 1}, CachedKey("a")]


def test_java_uuid_forms() -> None:
    assert loads(bytes.fromhex("c70909") + b"1-2-3-4-5") == uuid.UUID("00000001-0002-0003-0004-000000000005")
    with pytest.raises(DecodeError):
        loads(bytes.fromhex("c70a09") + b"1-2-3-4-5g")


EVENTS = [
    [K("a/b"), 1],
    [K("test/pushed"), {K("a"): 1, K("b"): 2}],
    [K("c/d"), "x"],
    [K("test/pushed"), {K("a"): 3, K("b"): 4, "s": {"a": 5}}],
    [K("test/pushed"), {K("b"): 5, K("z"): frozenset({FrozenDict({K("a"): 1})})}],
]


@pytest.mark.parametrize("n", range(len(EVENTS) + 1))
def test_pack_batch_is_the_envelope_with_one_cache(n: int) -> None:
    """Whatever the mix of keyed and keyless events, the batch is exactly Sente's pack of the envelope."""
    for events in (EVENTS[:n], EVENTS[n:], EVENTS[n:] + EVENTS[:n]):
        assert pack_batch([encode_event(e) for e in events]) == dumps([events, None])


def test_pack_batch_of_sentes_capture() -> None:
    # ../shared/vectors/msgpack m545: the second event's keys are cache references into the first's
    events = [[K("test/pushed"), {K("a"): 1, K("b"): 2}], [K("test/pushed"), {K("a"): 3, K("b"): 4}]]
    assert pack_batch([encode_event(e) for e in events]).hex() == (
        "929292c70b00746573742f70757368656482d4006101d400620292c70b00746573742f70757368656482d4080003d4080104c0"
    )


def test_encoded_event_is_reusable_across_batches() -> None:
    a, b = encode_event(EVENTS[1]), encode_event(EVENTS[3])
    first = pack_batch([a, b])
    assert pack_batch([b, a]) == dumps([[EVENTS[3], EVENTS[1]], None])
    assert pack_batch([a, b]) == first
    with pytest.raises(TypeError):
        pack_batch([EVENTS[0]])
