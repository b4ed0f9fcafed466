"""The rules of csente.transit beyond the golden vectors: handlers, tags, map keys, caching, quoting, errors,
and round trips of generated values through transit-json, json-verbose and msgpack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csente import edn
from csente.transit import URI, WriteHandler, dumps, dumps_msgpack, loads, loads_msgpack
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue
from tests.vectors import same

UTC = dt.UTC


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


# -- handlers and tags -------------------------------------------------------------------------------


def test_a_write_handler_with_a_long_tag_writes_a_tagged_value_and_a_read_handler_reads_it() -> None:
    handlers = {Point: WriteHandler("point", lambda p: [p.x, p.y])}
    text = dumps([Point(1, 2)], handlers=handlers)
    assert text == '[["~#point",[1,2]]]'
    assert dumps(Point(1, 2), handlers=handlers, verbose=True) == '{"~#point":[1,2]}'
    [p] = loads(text, handlers={"point": lambda rep: Point(*rep)})
    assert (p.x, p.y) == (1, 2)


def test_a_write_handler_with_a_one_char_tag_writes_a_scalar_string_usable_as_a_map_key() -> None:
    handlers = {Money: WriteHandler("M", lambda m: str(m.cents))}
    assert dumps(Money(250), handlers=handlers) == '["~#\'","~M250"]'
    assert dumps({Money(250): 1}, handlers=handlers) == '["^ ","~M250",1]'
    assert loads('["~#\'","~M250"]', handlers={"M": lambda s: int(s)}) == 250


def test_a_scalar_handler_uses_string_rep_when_given() -> None:
    handlers = {Money: WriteHandler("M", lambda m: m.cents, string_rep=lambda m: f"{m.cents}c")}
    assert dumps([Money(5)], handlers=handlers) == '["~M5c"]'
    assert msgspec.msgpack.decode(dumps_msgpack([Money(5)], handlers=handlers)) == ["~M5c"]


def test_a_scalar_handler_that_gives_no_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must give a str"):
        dumps([Money(5)], handlers={Money: WriteHandler("M", lambda m: m.cents)})


def test_handlers_apply_to_subclasses() -> None:
    class Point3(Point):
        pass

    assert dumps([Point3(1, 2)], handlers={Point: WriteHandler("point", lambda p: [p.x, p.y])}) == (
        '[["~#point",[1,2]]]'
    )


class _Dict(dict[Any, Any]):
    pass


class _List(list[Any]):
    pass


class _Set(frozenset[Any]):
    pass


class _Str(str):
    pass


class _Int(int):
    pass


class _Float(float):
    pass


class _Instant(dt.datetime):
    pass


class _Uuid(uuid.UUID):
    pass


class _Decimal(Decimal):
    pass


class _Bytes(bytes):
    pass


SUBCLASSED = [
    (_Dict({"a": 1}), {"a": 1}),
    (_List([1, "x"]), [1, "x"]),
    (_Set({1}), frozenset({1})),
    (_Str("~tilde"), "~tilde"),
    (_Int(7), 7),
    (_Float(1.5), 1.5),
    (_Instant(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
    (_Uuid(int=5), uuid.UUID(int=5)),
    (_Decimal("1.25"), Decimal("1.25")),
    (_Bytes(b"ab"), b"ab"),
]


@pytest.mark.parametrize(("sub", "base"), SUBCLASSED, ids=lambda v: type(v).__name__)
def test_every_writer_writes_a_subclass_of_a_supported_type_as_its_base_type(sub: Any, base: Any) -> None:
    for value, plain in (([sub], [base]), ({"k": sub}, {"k": base})):
        assert dumps(value) == dumps(plain)
        assert dumps(value, verbose=True) == dumps(plain, verbose=True)
        assert dumps_msgpack(value) == dumps_msgpack(plain)


def test_every_writer_refuses_a_type_it_cannot_write() -> None:
    for write in (dumps, dumps_msgpack):
        with pytest.raises(TypeError, match=r"transit cannot write a value of type .*Point"):
            write([Point(1, 2)])


def test_read_handlers_override_built_in_tags() -> None:
    assert loads('["~#set",[1,2]]', handlers={"set": sorted}) == [1, 2]
    assert loads('["~:kw"]', handlers={":": str.upper}) == ["KW"]


def test_unknown_composite_tags_read_as_tagged_values_and_write_back_the_same() -> None:
    for text in ('["~#my/tag",["^ ","~:a",1]]', '[["~#point",[1,2]],["^0",[3,4]]]'):
        value = loads(text)
        assert dumps(value) == text
    assert loads('["~#point",[1,2]]') == TaggedValue("point", [1, 2])
    assert loads('{"~#point":[1,2]}') == TaggedValue("point", [1, 2])


def test_a_handler_error_on_read_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="point"):
        loads('["~#point",[1]]', handlers={"point": lambda rep: Point(*rep)})


# -- mapping ---------------------------------------------------------------------------------------


def test_scalars_of_the_mapping() -> None:
    when = dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    u = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    cases: list[tuple[Any, str]] = [
        (Keyword("a/b"), "~:a/b"),
        (Symbol("a/b"), "~$a/b"),
        (Char("x"), "~cx"),
        (Decimal("1.5"), "~f1.5"),
        (u, f"~u{u}"),
        (when, "~m1577934245678"),
        (URI("http://example.com"), "~rhttp://example.com"),
        (b"\x00\xff", "~bAP8="),
        (2**53, "~i9007199254740992"),
        (2**64, "~n18446744073709551616"),
        (float("nan"), "~zNaN"),
        ("~x", "~~x"),
        ("^x", "~^x"),
        ("`x", "~`x"),
    ]
    for value, encoded in cases:
        assert dumps([value]) == f'["{encoded}"]'
        assert same(loads(dumps([value]))[0], value)
    assert loads('["~t2020-01-02T03:04:05.678Z"]') == [when]
    assert type(loads('["~rhttp://x"]')[0]) is URI


def test_collections_of_the_mapping() -> None:
    assert dumps([(1, 2), List([1]), frozenset([3]), {4}, Fraction(22, 7)]) == (
        '[[1,2],["~#list",[1]],["~#set",[3]],["^1",[4]],["~#ratio",["~n22","~n7"]]]'
    )
    assert loads('["~#list",[1,[2]]]') == List([1, [2]])


def test_maps_with_string_like_keys_are_arrays_with_a_marker_others_are_cmaps() -> None:
    assert dumps({Keyword("a"): 1, "b": 2, 3: 4, None: 5, True: 6, 1.5: 7}) == (
        '["^ ","~:a",1,"b",2,"~i3",4,"~_",5,"~?t",6,"~d1.5",7]'
    )
    assert dumps({(1, 2): "v", "k": "w"}) == '["~#cmap",[[1,2],"v","k","w"]]'
    assert dumps({(1, 2): "v"}, verbose=True) == '{"~#cmap":[[1,2],"v"]}'
    assert dumps({Keyword("a"): 1}, verbose=True) == '{"~:a":1}'


def test_composite_keys_and_set_members_read_as_hashable_values() -> None:
    value = loads('["~#cmap",[["^ ","~:a",[1]],"map key",[1,["~#set",[[2]]]],"vector key"]]')
    assert value == {FrozenDict({Keyword("a"): (1,)}): "map key", (1, frozenset([(2,)])): "vector key"}
    assert type(next(iter(value))) is FrozenDict
    assert loads('["~#set",[{"a":[1]}]]') == frozenset([FrozenDict({"a": (1,)})])


def test_top_level_scalars_are_quoted_and_composites_are_not() -> None:
    assert dumps(1) == '["~#\'",1]'
    assert dumps("s", verbose=True) == '{"~#\'":"s"}'
    assert dumps(Keyword("k")) == '["~#\'","~:k"]'
    assert dumps(Fraction(1, 2)) == '["~#ratio",["~n1","~n2"]]'
    assert dumps([]) == "[]"
    assert loads('["~#\'",1]') == 1


def test_doubles_are_written_like_java() -> None:
    assert dumps([1.0, -0.0, 0.001, 1e-4, 1e7, 123456.789, 1e300, 2.5e-10, 0.1 + 0.2]) == (
        "[1.0,-0.0,0.001,1.0E-4,1.0E7,123456.789,1.0E300,2.5E-10,0.30000000000000004]"
    )
    # 16 digits where two neighbours both read back: Java (and repr) take the nearer one
    assert dumps([74529.87192246431, 8.465496743493455]) == "[74529.87192246431,8.465496743493455]"


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False)
       | st.builds(lambda m, k: m / 10**k, st.integers(-(10**16), 10**16), st.integers(0, 20)))
def test_doubles_are_written_as_edn_writes_them(x: float) -> None:
    # one Double.toString serves both codecs; test_edn_fuzz checks it against a reference
    assert dumps([x]) == f"[{edn.dumps(x)}]"
    assert dumps({x: 1}) == f'["^ ","~d{edn.dumps(x)}",1]'


def test_strings_are_escaped_like_jackson() -> None:
    assert dumps(['\x00\x07\b\t\n\x0c\r\x1f"\\/\x7f', "é☃", "😀", "\ud83d"]) == (
        '["\\u0000\\u0007\\b\\t\\n\\f\\r\\u001F\\"\\\\/\x7f","é☃","\\uD83D\\uDE00","\\uD83D"]'
    )
    assert loads('["\\uD83D\\uDE00","\\uD83D","\\u00e9"]') == ["😀", "\ud83d", "é"]


def test_unknown_types_are_a_type_error_naming_the_type() -> None:
    with pytest.raises(TypeError, match="Point"):
        dumps([Point(1, 2)])
    with pytest.raises(TypeError, match="object"):
        dumps_msgpack({"k": object()})


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        dumps([dt.datetime(2020, 1, 1)])


# -- caching ---------------------------------------------------------------------------------------


def test_keywords_symbols_and_tags_are_cached_anywhere_strings_only_as_map_keys() -> None:
    value = [
        {Keyword("aaaa"): "long string", "bbbb": "long string"},
        {Keyword("aaaa"): "bbbb", "bbbb": Symbol("cccc")},
        [Symbol("cccc"), frozenset([1]), frozenset([2]), Keyword("abc"), Keyword("abc")],
    ]
    text = dumps(value)
    assert text == (
        '[["^ ","~:aaaa","long string","bbbb","long string"],["^ ","^0","bbbb","^1","~$cccc"],'
        '["^2",["~#set",[1]],["^3",[2]],"~:abc","^4"]]'
    )
    assert same(loads(text), value)
    assert dumps(value, verbose=True).count("^") == 0


def test_short_strings_are_not_cached() -> None:
    assert dumps([{"abc": 1}, {"abc": 2}, Keyword("a"), Keyword("a")]) == (
        '[["^ ","abc",1],["^ ","abc",2],"~:a","~:a"]'
    )


def test_the_cache_starts_over_after_44_times_44_entries() -> None:
    keys = [Keyword(f"k{i:04d}") for i in range(44 * 44 + 2)]
    text = dumps(keys + keys[-3:])
    assert text.endswith('"~:k1935","~:k1936","~:k1937","~:k1935","^0","^1"]')
    assert loads(text) == keys + keys[-3:]


def test_msgpack_caches_map_keys_and_keeps_native_keys() -> None:
    value = [{Keyword("aaaa"): 1, 2: 3}, {Keyword("aaaa"): 4}]
    assert msgspec.msgpack.decode(dumps_msgpack(value)) == [{"~:aaaa": 1, 2: 3}, {"^0": 4}]
    assert same(loads_msgpack(dumps_msgpack(value)), value)


def test_nested_dumps_inside_a_handler_does_not_disturb_the_outer_cache() -> None:
    handlers = {Point: WriteHandler("point", lambda p: dumps([Keyword("inner-kw"), Keyword("aaaa")]))}
    value = [Keyword("aaaa"), Point(0, 0), Keyword("aaaa"), Keyword("inner-kw")]
    assert dumps(value, handlers=handlers) == (
        '["~:aaaa",["~#point","[\\"~:inner-kw\\",\\"~:aaaa\\"]"],"^0","~:inner-kw"]'
    )


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "pos"),
    [
        ("[1,]", 3),
        ("[1,2", 4),
        ('["abc', 5),
        ("[1] x", 4),
        ("", 0),
        ("[01]", 2),
        ("[1.]", 3),
        ('["\\x"]', 2),
        ('["^5"]', 1),
        ('["~xfoo"]', 1),
        ('["~#ratio",[1]]', 11),
        ('["~#set",{"a":1}]', 9),
        ('["~#set"]', 8),
        ('["^ ","a"]', 9),
        ('["~:a","~#set"]', 7),
        ('["~i12x"]', 1),
        ('["~zNAN"]', 1),
        ('["~m1e3"]', 1),
        ('["~u1234"]', 1),
        ('["~cab"]', 1),
        ('["~bnot base64!"]', 1),
        ('["~t2020-13-01"]', 1),
        ('["~:"]', 1),
        ('["é", ]', 6),
    ],
)
def test_malformed_input_is_a_decode_error_with_its_position(data: str, pos: int) -> None:
    with pytest.raises(DecodeError) as info:
        loads(data)
    assert info.value.pos == pos


@pytest.mark.parametrize(
    ("data", "message", "pos"),
    [
        ("[1,2", "truncated input: unterminated array", 4),
        ("[1;2]", "expected ',' or ']' in array", 2),
        ('["^ ","~:a",1 "b"]', "expected ',' or ']' in map", 14),
        ('{"a":1 "b":2}', "expected ',' or '}' in object", 7),
        ('{"a":1', "truncated input: unterminated object", 6),
    ],
)
def test_a_bad_separator_or_end_after_an_item_says_which(data: str, message: str, pos: int) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)) as info:
        loads(data)
    assert info.value.pos == pos


def test_invalid_utf8_is_a_decode_error_at_its_byte() -> None:
    with pytest.raises(DecodeError, match="UTF-8") as info:
        loads(b'["ab\xff"]')
    assert info.value.pos == 4
    with pytest.raises(DecodeError, match="UTF-8"):
        loads(b'["\\n\xed\xa0\x80"]')  # an encoded surrogate


def test_nesting_deeper_than_max_depth_is_a_decode_error_not_a_recursion_error() -> None:
    with pytest.raises(DecodeError, match="max_depth"):
        loads("[" * 100000)
    with pytest.raises(DecodeError, match="max_depth"):
        loads('{"a":' * 300 + "1" + "}" * 300)
    with pytest.raises(DecodeError, match="max_depth"):
        loads_msgpack(b"\x91" * 100000)
    with pytest.raises(DecodeError, match="max_depth"):
        loads_msgpack(b"\x91" * 300 + b"\x01")
    assert loads("[" * 10 + "]" * 10, max_depth=10) == [[[[[[[[[[]]]]]]]]]]
    with pytest.raises(DecodeError):
        loads("[" * 11 + "]" * 11, max_depth=10)


def test_input_over_max_size_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="max_size"):
        loads("[" + "1," * 100 + "1]", max_size=100)
    with pytest.raises(DecodeError, match="max_size"):
        loads_msgpack(dumps_msgpack(list(range(100))), max_size=10)


def test_bad_msgpack_is_a_decode_error() -> None:
    for data in (b"", b"\xc1", b"\x92\x01", b"\xd4\x01\x02", dumps_msgpack(["^ ", 1])[:-1]):
        with pytest.raises(DecodeError):
            loads_msgpack(data)


def test_inputs_of_the_wrong_type_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        loads(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loads_msgpack("text")  # type: ignore[arg-type]


# -- generated values ------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=8)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    names.map(Keyword),
    names.map(Symbol),
    st.characters().map(Char),
    st.fractions(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
    st.text(max_size=8).map(URI),
    st.binary(max_size=8),
)
tags = st.from_regex(r"[a-z]{2,5}/[a-z]{1,5}", fullmatch=True)


def _hashable(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3).map(List),
        st.frozensets(children, max_size=3),
        st.dictionaries(children, children, max_size=3).map(FrozenDict),
        st.builds(TaggedValue, tags, children),
    )


hashables = st.recursive(scalars, _hashable, max_leaves=8)


def _values(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(List),
        st.frozensets(hashables, max_size=3),
        st.dictionaries(hashables, children, max_size=4),
        st.builds(TaggedValue, tags, children),
    )


values = st.recursive(scalars, _values, max_leaves=12)
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(values)
def test_values_round_trip_through_transit_json(value: Any) -> None:
    assert same(loads(dumps(value)), value)


@FAST
@given(values)
def test_values_round_trip_through_json_verbose(value: Any) -> None:
    assert same(loads(dumps(value, verbose=True)), value)


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, Char):
        return "\ud800" <= value.char <= "\udfff"
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, (list, tuple, frozenset)):
        return any(_has_lone_surrogate(x) for x in value)
    return isinstance(value, TaggedValue) and _has_lone_surrogate(value.value)


@FAST
@given(values)
def test_values_round_trip_through_msgpack(value: Any) -> None:
    if _has_lone_surrogate(value):
        # msgpack strings are UTF-8, which has no form for a lone surrogate: a clear ValueError, not bad bytes
        with pytest.raises(ValueError, match="surrogate"):
            dumps_msgpack(value)
        return
    assert same(loads_msgpack(dumps_msgpack(value)), value)


@FAST
@given(st.lists(st.sampled_from([Keyword(f"kw{i}") for i in range(60)] + [f"str{i}" for i in range(60)]), max_size=200))
def test_cache_codes_resolve_in_long_documents(items: list[Any]) -> None:
    value = [{k: k} for k in items]
    assert same(loads(dumps(value)), value)
    assert same(loads_msgpack(dumps_msgpack(value)), value)


def _decodes_or_refuses(read: Any, data: Any) -> None:
    """Reading gives a value or a DecodeError; any other exception fails the test."""
    with contextlib.suppress(DecodeError):
        read(data)


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    _decodes_or_refuses(loads, data)
    _decodes_or_refuses(loads_msgpack, data)


@FAST
@given(st.text(alphabet='[]{}",:^~#$ 0123456789.eE-+tfnul\\abc', max_size=40))
def test_random_json_like_text_only_ever_raises_decode_error(text: str) -> None:
    _decodes_or_refuses(loads, text)


@FAST
@given(values, st.data())
def test_mutated_documents_only_ever_raise_decode_error(value: Any, data: st.DataObject) -> None:
    for doc, read in ((dumps(value).encode("utf-8"), loads), (dumps_msgpack(value), loads_msgpack)):
        pos = data.draw(st.integers(0, len(doc)))
        kind = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        byte = bytes([data.draw(st.integers(0, 255))])
        mutated = {
            "replace": doc[:pos] + byte + doc[pos + 1 :],
            "delete": doc[:pos] + doc[pos + 1 :],
            "insert": doc[:pos] + byte + doc[pos:],
            "truncate": doc[:pos],
        }[kind]
        _decodes_or_refuses(read, mutated)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,19})(\.[0-9]{1,19})?([eE][-+]?[0-9]{1,3})?", fullmatch=True))
def test_json_numbers_read_as_python_numbers(token: str) -> None:
    assert same(loads(f"[{token}]")[0], int(token) if token.lstrip("-").isdigit() else float(token))


def test_floats_read_exactly() -> None:
    for text in ("189.52", "0.1", "1.0E300", "-0.0", "123456789012345678.5", "4.9E-324", "1e22", "1e23"):
        assert loads(f"[{text}]")[0] == float(text)
        assert math.copysign(1, loads(f"[{text}]")[0]) == math.copysign(1, float(text))
