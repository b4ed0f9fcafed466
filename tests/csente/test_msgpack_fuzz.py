"""Generated inputs: values round-trip through csente.msgpack, batches equal their envelope, and no input
(random or a mutated valid message) makes ``loads`` fail other than with DecodeError."""

from __future__ import annotations

import contextlib
import datetime as dt
from array import array
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csente.msgpack import Ext, dumps, encode_event, loads, pack_batch
from csente.types import Char, DecodeError, FrozenDict, Keyword, Symbol
from tests.vectors import same

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXT = st.text(st.characters(codec="utf-8"))  # no lone surrogates: the JVM writes those as '?'
NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
KEY = st.one_of(st.sampled_from(["a", "b", "id", "name"]), NAME)  # small pool: keys repeat, the cache works
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    TEXT,
    st.binary(max_size=40),
    KEY.map(Keyword),
    NAME.map(Symbol),
    st.characters(max_codepoint=0xFFFF, codec="utf-8").map(Char),
    st.fractions(max_denominator=2**62).filter(lambda f: f.denominator != 1 and abs(f.numerator) < 2**63),
    st.uuids(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.builds(Ext, st.integers(-128, 127).filter(lambda t: not -1 <= t <= 9), st.binary(max_size=20)),
)
ARRAYS = st.one_of(
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5).map(lambda xs: array("i", xs)),
    st.lists(st.floats(width=32, allow_nan=False), max_size=5).map(lambda xs: array("f", xs)),
    st.lists(st.floats(allow_nan=False), max_size=5).map(lambda xs: array("d", xs)),
)
HASHABLE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(inner, max_size=4),
        st.dictionaries(inner, inner, max_size=4).map(FrozenDict),
    ),
    max_leaves=12,
)
VALUES = st.recursive(
    SCALARS | ARRAYS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.frozensets(HASHABLE, max_size=4),
        st.dictionaries(KEY.map(Keyword) | KEY | HASHABLE, inner, max_size=5),
    ),
    max_leaves=25,
)


def _same(a: Any, b: Any) -> bool:
    if type(a) is array:
        return type(b) is array and a.typecode == b.typecode and a.tobytes() == b.tobytes()
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict and a.keys() == b.keys():  # (NaN keys go to same(), below)
        return all(_same(v, b[k]) for k, v in a.items())
    return same(a, b)


def loads_or_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        loads(data)


@FAST
@given(VALUES)
def test_values_round_trip(value: Any) -> None:
    assert _same(loads(dumps(value)), value)


@settings(FAST, max_examples=60)
@given(st.lists(st.tuples(KEY.map(Keyword), VALUES).map(list), max_size=4))
def test_batches_are_their_envelope(events: list[Any]) -> None:
    assert pack_batch([encode_event(e) for e in events]) == dumps([events, None])


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_read_or_fail_with_decode_error(data: bytes) -> None:
    loads_or_decode_error(data)


EDITS = st.lists(
    st.tuples(
        st.integers(min_value=0), st.sampled_from(["insert", "delete", "replace"]), st.binary(min_size=1, max_size=5)
    ),
    min_size=1,
    max_size=4,
)


@FAST
@given(VALUES, EDITS)
def test_mutated_messages_read_or_fail_with_decode_error(value: Any, edits: list[tuple[int, str, bytes]]) -> None:
    data = bytearray(dumps(value))
    for where, how, what in edits:
        at = where % (len(data) + 1)
        if how == "insert":
            data[at:at] = what
        elif how == "delete":
            del data[at : at + len(what)]
        else:
            data[at : at + len(what)] = what
    loads_or_decode_error(bytes(data))
