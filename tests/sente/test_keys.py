"""str dict keys in Python, keywords on the wire: the rules of sente.keys."""

from sente.edn import FrozenDict, Keyword
from sente.keys import StrKeysPacker, from_wire, to_wire
from sente.packers import EdnPacker, TransitPacker


def test_keyword_shaped_str_keys_go_out_as_keywords():
    assert EdnPacker().pack(to_wire({"msg": "hi", "a/b": 1, "é": 2})) == '{:msg "hi", :a/b 1, :é 2}'


def test_keys_that_would_not_read_back_as_keywords_stay_strings():
    out = to_wire({"with space": 1, "": 2, "x:": 3, ":lead": 4, "a/": 5, 7: 6})
    assert list(out) == ["with space", "", "x:", ":lead", "a/", 7]


def test_values_and_nested_maps_are_walked_but_only_keys_change():
    out = to_wire({"items": [{"id": "x"}, ("t", {"k": "v"})], "s": "msg"})
    assert out == {Keyword("items"): [{Keyword("id"): "x"}, ("t", {Keyword("k"): "v"})], Keyword("s"): "msg"}


def test_keyword_keys_come_in_as_str():
    assert from_wire({Keyword("msg"): [{Keyword("a/b"): 1, "s": 2}]}) == {"msg": [{"a/b": 1, "s": 2}]}


def test_hashable_maps_keep_their_type():
    assert type(to_wire(FrozenDict({"a": 1}))) is FrozenDict


def test_the_packer_wrapper_round_trips_python_dicts_in_both_packers():
    for inner in (EdnPacker(), TransitPacker()):
        packer = StrKeysPacker(inner)
        event = [Keyword("chat/msg"), {"msg": "hi", "meta": {"n": 1}}]
        wire = packer.pack_envelope(event, None)
        assert inner.unpack(wire)[0][1] == {Keyword("msg"): "hi", Keyword("meta"): {Keyword("n"): 1}}
        assert packer.unpack_envelope(wire).payload == event
        assert packer.pack_batch([packer.encode_event(event)]) == inner.pack_batch([inner.encode_event(to_wire(event))])
