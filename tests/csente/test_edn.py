"""The rules of csente.edn's API beyond the golden vectors: value mapping, options, limits and errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import math
import threading
import uuid
from collections import OrderedDict
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from csente.edn import dumps, loads
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue
from tests.vectors import same

UTC = dt.UTC

EVENT = (
    '[[:chat/message {:message/id 1234567, :message/text "Hello, \\"world\\"\\n", :message/score 0.875, '
    ':message/tags [:greeting :public], :message/at #inst "2024-01-02T03:04:05.678-00:00", '
    ':message/ref #uuid "6ba7b810-9dad-11d1-80b4-00c04fd430c8", :message/mentions #{alice bob}, '
    ":message/pos [(1.5 -2.25) 1/3 12.5M 123456789012345678901234567890N \\x \\newline nil true false]}] "
    '"a1b2c3"]'
)


# --- value mapping ---------------------------------------------------------------------------------------------


def test_keywords_are_interned_and_split_into_namespace_and_name() -> None:
    kw = loads(":chat/message")
    assert kw is Keyword("chat/message")
    assert (kw.ns, kw.name, kw.text) == ("chat", "message", "chat/message")
    assert loads(":a").ns is None
    first, second = loads("[:x/y :x/y]")
    assert first is second


def test_symbols_are_interned_and_special_tokens_are_not_symbols() -> None:
    assert loads("a.b/c") is Symbol("a.b/c")
    assert loads("clojure.core//") is Symbol("clojure.core//")
    assert loads("/") is Symbol("/")
    assert loads("[nil true false]") == [None, True, False]
    assert loads("[nil? True]") == [Symbol("nil?"), Symbol("True")]


def test_vectors_lists_sets_and_maps_map_to_python_types() -> None:
    value = loads('[(1 [2]) #{3} {"k" [4]}]')
    assert same(value, [List([1, [2]]), frozenset({3}), {"k": [4]}])
    assert type(value[0]) is List and type(value[0][1]) is list


def test_where_python_needs_a_hashable_value_collections_are_immutable_all_the_way_down() -> None:
    value = loads("{[1 [2] {:a [3]}] #{[4] (5 [6])}}")
    ((key, member_set),) = value.items()
    assert same(key, (1, (2,), FrozenDict({Keyword("a"): (3,)})))
    assert type(key[2]) is FrozenDict
    assert same(member_set, frozenset({(4,), List([5, (6,)])}))
    assert type(loads("{{:a 1} 2}").popitem()[0]) is FrozenDict
    assert same(loads("{:k {:a [1]}}"), {Keyword("k"): {Keyword("a"): [1]}}), "values stay mutable"


def test_numbers() -> None:
    assert same(
        loads("[0 -0 +7 0x1F -0X1f 2r1010 36rZZ 017 9223372036854775808 1N]"),
        [0, 0, 7, 31, -31, 10, 1295, 15, 9223372036854775808, 1],
    )
    assert same(
        loads("[1.0 1e3 -1.5E-3 1. 1e400 -1e400 1e-400 -0.0]"),
        [1.0, 1000.0, -0.0015, 1.0, math.inf, -math.inf, 0.0, -0.0],
    )
    assert same(loads("[1/3 -2/4 4/2 0/5]"), [Fraction(1, 3), Fraction(-1, 2), 2, 0])
    assert same(loads("[1.50M 1e3M -0.0M 7M]"), [Decimal("1.50"), Decimal("1E+3"), Decimal("0.0"), Decimal("7")])
    for bad in ["08", "1/0", "1/-2", "1.5/2", "37r1", "2r2", "16r0x10", "1a", "+1a", "1e", "0x", "1_000", "٣"]:
        with pytest.raises(DecodeError):
            loads(bad)


def test_symbolic_doubles_and_nan_is_unequal_to_itself_as_in_clojure() -> None:
    inf, ninf, nan = loads("[##Inf ##-Inf ##NaN]")
    assert (inf, ninf) == (math.inf, -math.inf) and math.isnan(nan)
    assert len(loads("#{##NaN ##NaN}")) == 2
    with pytest.raises(DecodeError):
        loads("##Infinity")


def test_strings_and_their_escapes() -> None:
    assert loads(r'"a\"b\\c\nd\te\rf\bg\fh"') == 'a"b\\c\nd\te\rf\bg\fh'
    assert loads(r'"\u00e9\101\0\12"') == "éA\0\n"
    assert loads(r'"\ud83d\ude00"') == "😀", "an escaped surrogate pair is one character, as in Java"
    assert loads('"raw\nnewline é 😀"') == "raw\nnewline é 😀"
    for bad in [r'"\x41"', r'"\/"', r'"\u12"', r'"\u12g4"', r'"\400"', r'"\8"', r'"\0a"', '"open']:
        with pytest.raises(DecodeError):
            loads(bad)


def test_characters() -> None:
    assert loads(r"[\a \newline \space \tab \return \backspace \formfeed \u00e9 \o101 \\ \( \,]") == [
        Char(c) for c in "a\n \t\r\b\féA\\(,"
    ]
    assert loads("\\\u2603") == Char("\u2603")
    for bad in ["\\ab", "\\", "\\uD800", "\\o400", "\\😀", "\\u12"]:
        with pytest.raises(DecodeError):
            loads(bad)


def test_tagged_instants_and_uuids() -> None:
    assert loads('#inst "2020-01-02T03:04:05.678-00:00"') == dt.datetime(2020, 1, 2, 3, 4, 5, 678000, UTC)
    assert loads('#inst "2020-01-02T03:04:05.6789+01:30"') == dt.datetime(2020, 1, 2, 1, 34, 5, 678000, UTC)
    assert loads('#inst "2020"') == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert loads('#inst "2020-01-01T23:59:60Z"') == dt.datetime(2020, 1, 2, tzinfo=UTC), "a leap second rolls over"
    assert loads('#uuid "1-2-3-4-5"') == uuid.UUID("00000001-0002-0003-0004-000000000005"), "as Java reads it"
    for bad in ['#inst "2021-02-29"', '#inst "2020-01-01T24:00"', "#inst 1", '#uuid "nope"', "#uuid 1"]:
        with pytest.raises(DecodeError):
            loads(bad)


def test_metadata_is_read_and_dropped() -> None:
    assert loads("^:m [1]") == [1]
    assert loads('^{:a 1} ^"tag" ^sym (1)') == List([1])
    for bad in ["^:m 1", "^:m :k", "^[1] []", "^:m", '^:m #inst "2020"']:
        with pytest.raises(DecodeError):
            loads(bad)


def test_namespaced_maps() -> None:
    assert loads('#:a{:x 1, :_/y 2, :b/z 3, w 4, "s" 5}') == {
        Keyword("a/x"): 1,
        Keyword("y"): 2,
        Keyword("b/z"): 3,
        Symbol("a/w"): 4,
        "s": 5,
    }
    assert loads("#:a.b/c {:x 1}") == {Keyword("c/x"): 1}, "tools.reader takes the name of a qualified symbol"
    for bad in ["#::{:x 1}", "#:a [1]", "#:a ;c\n{}", "#:a{:x 1 :a/x 2}"]:
        with pytest.raises(DecodeError):
            loads(bad)


# --- reading the first form ------------------------------------------------------------------------------------


def test_only_the_first_form_is_read() -> None:
    assert loads("[:a 1] trailing junk [") == [Keyword("a"), 1]
    assert loads("this is not edn [") == Symbol("this")
    assert loads("1,2") == 1


@pytest.mark.parametrize("text", ["", "   ", ",\n", "; just a comment", "#_ 1", "#! shebang", "\u2028\u3000"])
def test_no_form_reads_as_none(text: str) -> None:
    assert loads(text) is None
    assert loads(text.encode()) is None


def test_whitespace_is_javas_plus_the_comma() -> None:
    assert loads("[1\u20282\u30003,4\x1f5]") == [1, 2, 3, 4, 5]
    assert loads("[a\u00a0b]") == [Symbol("a\u00a0b")], "no-break space is not whitespace in Java"


def test_discard_comments_and_delimiters() -> None:
    assert loads("[1 #_2 #_ #_ 3 4 5 ;x\n 6]") == [1, 5, 6]
    assert loads("{:a #_:b 1}") == {Keyword("a"): 1}
    for bad in ["[1 #_]", "(1 2]", ")", "[1", "{:a}", "#", "#<x>", "#_"]:
        with pytest.raises(DecodeError):
            loads(bad)


def test_duplicates_are_errors_also_where_only_python_thinks_them_equal() -> None:
    for bad in ["{:a 1 :a 2}", "#{1 1}", "#{[1] (1)}", "{1 :a 1N :b}", "#{1 1.0}", "{true 1 1 2}", "#{0.5 1/2}"]:
        with pytest.raises(DecodeError, match="Duplicate"):
            loads(bad)


# --- tag readers ----------------------------------------------------------------------------------------------


def test_unknown_tags_need_a_reader_or_a_default() -> None:
    with pytest.raises(DecodeError, match="No reader function for tag my/point"):
        loads("#my/point [1 2]")
    assert loads("#my/point [1 2]", tag_readers={"my/point": tuple}) == (1, 2)
    assert loads("#my/point [1 2]", default=TaggedValue) == TaggedValue("my/point", [1, 2])
    assert loads("#{#t [1]}", default=TaggedValue) == frozenset({TaggedValue("t", (1,))})


def test_tag_readers_come_before_the_built_in_ones_and_their_errors_pass_through() -> None:
    assert loads('#inst "x"', tag_readers={"inst": str.upper}) == "X"

    def refuse(value: Any) -> Any:
        raise KeyError(value)

    with pytest.raises(KeyError):
        loads("#t 1", tag_readers={"t": refuse})


def test_an_unhashable_value_from_a_tag_reader_in_a_key_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        loads("{#t 1 2}", tag_readers={"t": lambda v: [v]})


def test_inside_a_discarded_form_only_the_built_in_readers_apply_as_in_tools_reader() -> None:
    assert loads('[#_#inst "2020" 1]') == [1]
    with pytest.raises(DecodeError):
        loads("[#_#t 1 2]", tag_readers={"t": str}, default=TaggedValue)
    with pytest.raises(DecodeError):
        loads('[#_#inst "bad" 1]')


# --- errors and limits -----------------------------------------------------------------------------------------


def test_decode_error_is_a_value_error_with_a_character_position() -> None:
    with pytest.raises(DecodeError) as caught:
        loads('["é😀" }')
    assert isinstance(caught.value, ValueError)
    assert caught.value.pos == 6
    with pytest.raises(DecodeError) as caught:
        loads('["é😀" }'.encode())
    assert caught.value.pos == 6, "a position in characters for bytes input too"


@pytest.mark.parametrize("bad", [b"\xff", b'"\xc3"', b"[\xed\xa0\x80]", b"\xc0\xaf", b"[1] \xfe", b"\xf4\x90\x80\x80"])
def test_bytes_must_be_valid_utf8_throughout(bad: bytes) -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        loads(bad)


def test_str_input_may_hold_lone_surrogates() -> None:
    assert loads('"\ud83d"') == "\ud83d"
    assert loads("\\\ud83d") == Char("\ud83d")
    assert dumps(["\ud83d", Char("\udc00")]) == '["\ud83d" \\\udc00]'


def test_nesting_is_limited_by_max_depth_without_recursion_errors() -> None:
    assert loads("[" * 256 + "]" * 256) is not None
    for deep in ["[" * 257 + "]" * 257, "[" * 100_000, "#_" * 100_000, "^:m " * 100_000 + "[]", "#t " * 100_000]:
        with pytest.raises(DecodeError, match="max_depth"):
            loads(deep)
    assert loads("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(DecodeError):
        loads("[[[1]]]", max_depth=2)
    deep = "{:a " * 10_000 + "1" + "}" * 10_000
    assert loads(deep, max_depth=10_000) is not None
    with pytest.raises(ValueError):
        loads("1", max_depth=10_001)


def test_max_depth_holds_on_a_thread_with_the_default_stack() -> None:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(loads("[" * 10_000 + "]" * 10_000, max_depth=10_000)))
    thread.start()
    thread.join()
    assert results and results[0] is not None


def test_max_size() -> None:
    assert loads("[1 2]", max_size=5) == [1, 2]
    with pytest.raises(DecodeError) as caught:
        loads("[1 2]", max_size=4)
    assert caught.value.pos == 4
    with pytest.raises(DecodeError):
        loads(b"[1 2]", max_size=4)


def test_every_prefix_of_a_document_reads_or_fails_with_decode_error() -> None:
    for end in range(len(EVENT) + 1):
        with contextlib.suppress(DecodeError):
            loads(EVENT[:end])


def test_loads_takes_only_text_or_bytes() -> None:
    with pytest.raises(TypeError):
        loads(12)  # type: ignore[arg-type]
    assert loads(bytearray(b"[1]")) == [1]


# --- writing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "nil"),
        (True, "true"),
        (False, "false"),
        (-7, "-7"),
        (2**63 - 1, "9223372036854775807"),
        (2**63, "9223372036854775808N"),
        (-(2**63) - 1, "-9223372036854775809N"),
        ("s", '"s"'),
        (Keyword("a/b"), ":a/b"),
        (Symbol("s"), "s"),
        (Fraction(22, 7), "22/7"),
        (Fraction(4, 2), "2"),
        (Decimal("1E+3"), "1E+3M"),
        (Decimal("-0.00"), "0.00M"),
        (Char("x"), "\\x"),
        (Char("\n"), "\\newline"),
    ],
)
def test_scalars_print_like_clojure(value: Any, text: str) -> None:
    assert dumps(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (100.0, "100.0"),
        (1e7, "1.0E7"),
        (9999999.0, "9999999.0"),
        (1e-3, "0.001"),
        (1e-4, "1.0E-4"),
        (123456.789, "123456.789"),
        (-0.0, "-0.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e22, "1.0E22"),
        (-1.5e-7, "-1.5E-7"),
        (1.7976931348623157e308, "1.7976931348623157E308"),
        (math.nan, "##NaN"),
        (math.inf, "##Inf"),
        (-math.inf, "##-Inf"),
        (0.000123, "1.23E-4"),
        (2.5e15, "2.5E15"),
    ],
)
def test_doubles_print_like_java_double_to_string(value: float, text: str) -> None:
    assert dumps(value) == text


def test_bool_is_not_taken_for_int_but_int_subclasses_print_as_ints() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    assert dumps([True, 1, Level.HIGH, False]) == "[true 1 3 false]"


def test_strings_escape_only_what_clojure_escapes() -> None:
    assert dumps('q" b\\ n\n t\t r\r f\f b\b nul\0 esc\x1b é 😀 \u2028') == (
        '"q\\" b\\\\ n\\n t\\t r\\r f\\f b\\b nul\0 esc\x1b é 😀 \u2028"'
    )


def test_collections() -> None:
    assert dumps([(1, 2), List([3]), [], List(), {}, frozenset(), set()]) == "[[1 2] (3) [] () {} #{} #{}]"
    assert dumps({Keyword("a"): 1, "b": [2], 3: None}) == '{:a 1, "b" [2], 3 nil}'
    assert dumps(OrderedDict([(1, 2), (3, 4)])) == "{1 2, 3 4}"
    assert dumps(FrozenDict({(1, 2): frozenset({3})})) == "{[1 2] #{3}}"


def test_namespace_maps_print_when_every_key_shares_a_namespace() -> None:
    value = {Keyword("user/name"): "n", Symbol("user/id"): {Keyword("user/x"): 1}}
    assert dumps(value, namespace_maps=True) == '#:user{:name "n", id #:user{:x 1}}'
    assert dumps(value) == '{:user/name "n", user/id {:user/x 1}}'
    for mixed in [
        {Keyword("a/x"): 1, Keyword("b/y"): 2},
        {Keyword("a/x"): 1, Keyword("y"): 2},
        {Keyword("a/x"): 1, 2: 3},
    ]:
        assert dumps(mixed, namespace_maps=True) == dumps(mixed)
    assert dumps({}, namespace_maps=True) == "{}"


def test_uuids_instants_and_tagged_values() -> None:
    u = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    assert dumps(u) == '#uuid "6ba7b810-9dad-11d1-80b4-00c04fd430c8"'
    later = dt.datetime(2024, 1, 2, 4, 4, 5, 678999, dt.timezone(dt.timedelta(hours=1)))
    assert dumps(later) == '#inst "2024-01-02T03:04:05.678-00:00"', "converted to UTC, truncated to milliseconds"
    assert dumps(dt.datetime(1, 1, 1, tzinfo=UTC)) == '#inst "0001-01-01T00:00:00.000-00:00"'
    assert dumps(TaggedValue("my/t", [1, {Keyword("a"): 2}])) == "#my/t [1 {:a 2}]"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(TypeError, match="naive"):
        dumps(dt.datetime(2024, 1, 2))


def test_writers_tag_other_types_by_exact_type_then_mro() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    class Point3(Point):
        pass

    writers = {Point: lambda p: ("my/point", [p.x, p.y])}
    assert dumps([Point(1, 2), Point3(3, 4)], writers=writers) == "[#my/point [1 2] #my/point [3 4]]"
    writers[Point3] = lambda p: ("my/point3", [p.x, p.y, 0])
    assert dumps(Point3(3, 4), writers=writers) == "#my/point3 [3 4 0]"


def test_other_types_are_a_type_error_naming_the_type() -> None:
    for value in [object(), b"bytes", dt.date(2024, 1, 2), 1 + 2j, iter([])]:
        with pytest.raises(TypeError, match=type(value).__qualname__):
            dumps(value)
    with pytest.raises(ValueError):
        dumps(Decimal("NaN"))


def test_deep_and_circular_structures_do_not_crash() -> None:
    deep: Any = []
    for _ in range(5_000):
        deep = [deep]
    assert dumps(deep) == "[" * 5_001 + "]" * 5_001
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="deeper"):
        dumps(loop)


def test_a_sente_event_round_trips() -> None:
    value = loads(EVENT)
    assert loads(dumps(loads(dumps(value)))) == value  # not the text: a set prints in its (hash) iteration order
    assert same(loads(dumps(value)), value)
    assert same(loads(dumps(value).encode()), value)
