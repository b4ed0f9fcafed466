"""Generated inputs: values round-trip through csente.edn, and no input makes ``loads`` fail other than DecodeError.

Also checks the two hand-written fast paths against slow references: doubles print as Java's
``Double.toString`` would with shortest digits, and decimal float tokens read as Python's ``float``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csente.edn import dumps, loads
from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue
from tests.vectors import same

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Symbol and keyword names tools.reader reads back as themselves: no leading digit (nor +/- then a digit),
# no ':' (so no trailing or doubled colon), at most one '/', and none of nil/true/false.
NAME = st.from_regex(r"[a-zA-Zé*!_?<>=][a-zA-Z0-9é*+!_?<>=.#'-]{0,8}", fullmatch=True)
NAMED = st.tuples(st.none() | NAME, NAME).map(lambda p: p[1] if p[0] is None else f"{p[0]}/{p[1]}")
SYMBOL_TEXT = NAMED.filter(lambda t: t not in ("nil", "true", "false"))
# A tag must not start like a dispatch macro (#_ #! #< ...), and inst/uuid have readers of their own.
TAG = SYMBOL_TEXT.filter(lambda t: t[0].isalpha() and t not in ("inst", "uuid"))

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(st.characters(codec="utf-8")),  # UTF-8 text: lone surrogates can't go into bytes
    NAMED.map(Keyword),
    SYMBOL_TEXT.map(Symbol),
    st.characters(max_codepoint=0xFFFF, codec="utf-8").map(Char),
    st.fractions().filter(lambda f: f.denominator != 1),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30).map(
        lambda d: d.copy_abs() if d.is_zero() else d  # BigDecimal has no negative zero
    ),
    st.uuids(),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
)

# What loads gives where Python needs a hashable value (map keys, set members, anything inside them) ...
HASHABLE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(tuple),
        st.lists(inner, max_size=4).map(List),
        st.frozensets(inner, max_size=4),
        st.dictionaries(inner, inner, max_size=4).map(FrozenDict),
        st.builds(TaggedValue, TAG, inner),
    ),
    max_leaves=12,
)
# ... and everywhere else.
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(List),
        st.frozensets(HASHABLE, max_size=4),
        st.dictionaries(HASHABLE, inner, max_size=5),
        st.builds(TaggedValue, TAG, inner),
    ),
    max_leaves=25,
)


def loads_or_decode_error(data: str | bytes) -> None:
    """Any input either reads (unknown tags as TaggedValue) or is a DecodeError: nothing else escapes."""
    with contextlib.suppress(DecodeError):
        loads(data, default=TaggedValue)


@FAST
@given(VALUES)
def test_values_round_trip(value: Any) -> None:
    text = dumps(value)
    assert same(loads(text, default=TaggedValue), value)
    assert same(loads(text.encode(), default=TaggedValue), value)


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_read_or_fail_with_decode_error(data: bytes) -> None:
    loads_or_decode_error(data)


@FAST
@given(st.text(alphabet="[](){}#:^\\\"';,_ \n0123456789+-./eEMNrRxuo@`~!<abcnilt\u2028é😀", max_size=80))
def test_edn_like_text_reads_or_fails_with_decode_error(text: str) -> None:
    loads_or_decode_error(text)


EDITS = st.lists(
    st.tuples(
        st.integers(min_value=0), st.sampled_from(["insert", "delete", "replace"]), st.binary(min_size=1, max_size=3)
    ),
    min_size=1,
    max_size=4,
)


@FAST
@given(VALUES, EDITS)
def test_mutated_documents_read_or_fail_with_decode_error(value: Any, edits: list[tuple[int, str, bytes]]) -> None:
    data = bytearray(dumps(value).encode("utf-8", "surrogatepass"))
    for where, how, what in edits:
        at = where % (len(data) + 1)
        if how == "insert":
            data[at:at] = what
        elif how == "delete":
            del data[at : at + len(what)]
        else:
            data[at : at + len(what)] = what
    loads_or_decode_error(bytes(data))
    loads_or_decode_error(bytes(data).decode("utf-8", "replace"))


def java_double_to_string(x: float) -> str:
    """Java's Double.toString layout around Python's shortest digits (and Clojure's ##NaN ##Inf ##-Inf)."""
    if math.isnan(x):
        return "##NaN"
    if math.isinf(x):
        return "##Inf" if x > 0 else "##-Inf"
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    _, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # |x| = 0.text * 10**point
    minus = "-" if x < 0 else ""
    if 1e-3 <= abs(x) < 1e7:
        if point <= 0:
            return f"{minus}0.{'0' * -point}{text}"
        whole, fraction = text[:point].ljust(point, "0"), text[point:]
        return f"{minus}{whole}.{fraction or '0'}"
    return f"{minus}{text[0]}.{text[1:] or '0'}E{point - 1}"


@settings(max_examples=500, deadline=None)
@given(st.floats() | st.builds(lambda m, k: m / 10**k, st.integers(-(10**16), 10**16), st.integers(0, 20)))
def test_doubles_print_as_java_with_shortest_digits(x: float) -> None:
    assert dumps(x) == java_double_to_string(x)
    assert same(loads(dumps(x)), x)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"[-+]?[0-9]{1,19}(\.[0-9]{0,19}([eE][-+]?[0-9]{1,3})?|[eE][-+]?[0-9]{1,3})", fullmatch=True))
def test_decimal_float_tokens_read_as_python_floats(token: str) -> None:
    assert same(loads(token), float(token))
