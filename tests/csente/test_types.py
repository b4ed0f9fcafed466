"""The shared value types: keywords and symbols are interned, namespaced, hashable and picklable."""

import copy
import pickle

import pytest

from csente.types import Char, DecodeError, FrozenDict, Keyword, List, Symbol, TaggedValue, keyword, symbol


def test_keyword_has_namespace_and_name():
    kw = Keyword("a/b")
    assert (kw.ns, kw.name, kw.text, str(kw)) == ("a", "b", "a/b", ":a/b")


def test_unqualified_keyword_has_no_namespace():
    assert Keyword("x").ns is None
    assert Keyword("x").name == "x"


@pytest.mark.parametrize(("text", "ns", "name"), [("/", None, "/"), ("a//", "a", "/"), ("a.b/c", "a.b", "c")])
def test_slash_edge_cases_split_like_clojure(text, ns, name):
    assert (Keyword(text).ns, Keyword(text).name) == (ns, name)


def test_keywords_and_symbols_are_interned():
    assert Keyword("chsk/handshake") is Keyword("chsk/handshake") is keyword("chsk/handshake")
    assert Symbol("foo") is symbol("foo")


def test_keyword_is_not_a_symbol_or_a_string():
    assert Keyword("a") != Symbol("a")
    assert Keyword("a") != "a"
    assert {Keyword("a"): 1, Symbol("a"): 2, "a": 3}[Keyword("a")] == 1


def test_interning_survives_pickle_and_copy():
    kw = Keyword("ns/k")
    assert pickle.loads(pickle.dumps(kw)) is kw
    assert copy.deepcopy(kw) is kw


def test_constructor_takes_one_string():
    with pytest.raises(TypeError):
        Keyword(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Keyword("")


def test_char_is_one_character_with_value_equality():
    assert Char("a") == Char("a")
    assert hash(Char("a")) == hash(Char("a"))
    with pytest.raises(ValueError):
        Char("ab")


def test_tagged_value_compares_by_tag_and_value():
    assert TaggedValue("my/tag", [1]) == TaggedValue("my/tag", [1])
    assert TaggedValue("my/tag", 1) != TaggedValue("other/tag", 1)


def test_edn_list_is_a_hashable_sequence_equal_to_a_vector_like_clojure():
    assert List([1, 2]) == (1, 2)
    assert hash(List([1, 2])) == hash((1, 2))


def test_frozen_dict_is_hashable_and_read_only():
    d = FrozenDict({Keyword("a"): 1})
    assert hash(d) == hash(FrozenDict({Keyword("a"): 1}))
    with pytest.raises(TypeError):
        d[Keyword("b")] = 2
    with pytest.raises(TypeError):
        d.update({})


def test_decode_error_is_a_value_error_with_a_position():
    err = DecodeError("Unexpected EOF", 7)
    assert isinstance(err, ValueError)
    assert err.pos == 7
    assert "position 7" in str(err)
    assert pickle.loads(pickle.dumps(err)).pos == 7
