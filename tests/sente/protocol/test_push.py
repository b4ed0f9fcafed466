"""The push path: one event sent to many uids is one batch, per-uid order holds across private pushes and
uid-list broadcasts, and the flush's C grouping gives each uid exactly its events."""

from __future__ import annotations

import random
from typing import Any

from csente.groups import group, record, unchanged
from csente.types import Keyword
from sente.packers import MsgpackPacker, TransitPacker
from sente.protocol.backplane import LocalBackplane
from sente.protocol.server import ServerCore

from .test_server import make, open_ws, sends

K = Keyword


def many(core: ServerCore, n: int) -> list[str]:
    uids = [f"u{i}" for i in range(n)]
    for i, uid in enumerate(uids):
        open_ws(core, f"H{i}", uid=uid, client_id=f"c{i}")
    return uids


def test_one_event_sent_to_each_uid_in_a_loop_is_packed_and_written_once():
    core = make()
    uids = many(core, 5)
    event = [K("t/x"), {K("n"): 1}]
    for uid in uids:
        assert core.send(uid, event, 0)
    core.tick(30)
    assert sends(core.take_actions()) == [(tuple(f"H{i}" for i in range(5)), "[[[:t/x {:n 1}]] nil]")]


def test_an_event_changed_between_sends_goes_out_as_each_send_saw_it():
    core = make()
    alice, bob = many(core, 2)
    event: list[Any] = [K("t/x"), {K("n"): 1}]
    core.send(alice, event, 0)
    event[1][K("n")] = 2  # same object, new value: the dedupe compares encodings, not identities
    core.send(bob, event, 0)
    core.tick(30)
    assert sends(core.take_actions()) == [(("H0",), "[[[:t/x {:n 1}]] nil]"), (("H1",), "[[[:t/x {:n 2}]] nil]")]


def test_an_equal_event_sent_again_after_another_push_keeps_its_place_in_the_order():
    core = make()
    alice, bob = many(core, 2)
    core.send(alice, [K("t/a"), 1], 0)
    core.broadcast([K("t/all"), 2], 0)
    core.send(bob, [K("t/a"), 1], 0)  # equal to the first, but after the broadcast: not the same seq
    core.send(alice, [K("t/a"), 1], 0)
    core.tick(30)
    assert sorted(sends(core.take_actions())) == [
        (("H0",), "[[[:t/a 1] [:t/all 2] [:t/a 1]] nil]"),
        (("H1",), "[[[:t/all 2] [:t/a 1]] nil]"),
    ]


def test_an_event_object_sent_again_is_encoded_again_when_anything_in_it_changed():
    changes = [
        lambda ev: ev[1][K("xs")].append(3),  # deep in place
        lambda ev: ev[1][K("xs")].__setitem__(0, 9),  # same length, other item
        lambda ev: ev[1].__setitem__(K("k"), "v"),  # a key added
        lambda ev: ev.__setitem__(1, {K("xs"): [1, 2]}),  # an equal value, another object: encoded again, same text
    ]
    for change in changes:
        core = make()
        alice, bob = many(core, 2)
        event: list[Any] = [K("t/x"), {K("xs"): [1, 2]}]
        core.send(alice, event, 0)
        change(event)
        core.send(bob, event, 0)
        core.tick(30)
        got = {handle: data for handles, data in sends(core.take_actions()) for handle in handles}
        assert got["H0"] == "[[[:t/x {:xs [1 2]}]] nil]"
        assert got["H1"] == core.packer.pack_batch([core.packer.encode_event(event)])  # as bob's send saw it


def test_record_covers_plain_data_only():
    assert record([K("t/x"), {K("a"): [1, 2.5, None, True, b"x", "s"]}]) is not None
    for opaque in ({1, 2}, object(), [K("t/x"), frozenset()], list(range(300))):
        assert record(opaque) is None
    value = {"a": [1]}
    recorded = record(value)
    assert recorded is not None and unchanged(value, recorded)
    value["a"].append(2)
    assert not unchanged(value, recorded)


def test_the_same_event_sent_twice_to_one_uid_arrives_twice():
    core = make()
    (alice,) = many(core, 1)
    core.send(alice, [K("t/a"), 1], 0)
    core.send(alice, [K("t/a"), 1], 0)
    core.tick(30)
    assert sends(core.take_actions()) == [(("H0",), "[[[:t/a 1] [:t/a 1]] nil]")]


def test_private_pushes_and_uid_list_broadcasts_interleave_in_send_order_per_uid():
    core = make()
    a, b, c, _ = many(core, 4)
    core.broadcast([K("t/ab"), 1], 0, uids=frozenset({a, b}))
    core.send(c, [K("t/c"), 2], 0)
    core.broadcast([K("t/bc"), 3], 0, uids=[b, c])
    core.broadcast([K("t/all"), 4], 0)
    core.send(b, [K("t/b"), 5], 0)
    core.broadcast([K("t/ab"), 6], 0, uids=frozenset({a, b}))
    core.tick(30)
    assert sorted(sends(core.take_actions())) == [
        (("H0",), "[[[:t/ab 1] [:t/all 4] [:t/ab 6]] nil]"),
        (("H1",), "[[[:t/ab 1] [:t/bc 3] [:t/all 4] [:t/b 5] [:t/ab 6]] nil]"),
        (("H2",), "[[[:t/c 2] [:t/bc 3] [:t/all 4]] nil]"),
        (("H3",), "[[[:t/all 4]] nil]"),
    ]


def test_a_broadcast_to_the_connected_uids_view_reaches_every_uid_in_one_batch():
    core = make()
    many(core, 3)
    for n in range(3):
        core.broadcast([K("t/x"), n], 0, uids=core.any_uids)
    core.tick(30)
    [(handles, data)] = sends(core.take_actions())
    assert sorted(handles) == ["H0", "H1", "H2"]
    assert data == "[[[:t/x 0] [:t/x 1] [:t/x 2]] nil]"


def test_binary_packers_batch_a_send_loop_once_too():
    for packer in (TransitPacker(), MsgpackPacker()):
        for same_object in (True, False):
            core = ServerCore(packer)
            uids = many(core, 3)
            data = {K("n"): 1}
            event = [K("t/x"), data]
            for uid in uids:
                core.send(uid, event if same_object else [K("t/x"), data], 0)
            core.tick(30)
            out = sends(core.take_actions())
            # a fresh event list per send: transit compares the objects in it; msgpack's encodings are not compared
            expected = 1 if same_object or isinstance(packer, TransitPacker) else 3
            assert len(out) == expected, (packer.name, same_object, out)
            for _, batch in out:
                assert packer.unpack(batch) == [[[K("t/x"), {K("n"): 1}]], None], packer.name


# ---------------------------------------------------------------- connected uids


def test_the_connected_uids_view_is_one_object_until_a_uid_joins_or_leaves():
    backplane = LocalBackplane()
    empty = backplane.uids("any")
    assert backplane.uids("any") is empty == frozenset()
    assert backplane.join("alice", "ws")
    ws, both = backplane.uids("ws"), backplane.uids("any")
    assert ws == both == {"alice"} and backplane.uids("any") is both and backplane.uids("ajax") == frozenset()
    assert not backplane.join("alice", "ws")  # a second client of the same uid: the views stand
    assert backplane.uids("any") is both
    backplane.join("bob", "ajax")
    assert backplane.uids("any") == {"alice", "bob"} and backplane.uids("ws") is ws
    backplane.leave("alice", "ws")
    assert backplane.uids("ws") is ws  # alice has one client left
    backplane.leave("alice", "ws")
    assert backplane.uids("ws") == frozenset() and backplane.uids("any") == {"bob"}


# ---------------------------------------------------------------- the C grouping against its definition


def reference(private: dict[Any, list[tuple[int, Any]]], broadcasts: list[tuple[int, Any, frozenset[Any] | None]],
              by_uid: dict[Any, Any]) -> dict[Any, list[Any]]:
    """Each uid here with its own pushes and the broadcasts it is a target of, in seq order."""
    out = {}
    for uid in by_uid:
        events = sorted(private.get(uid, []) + [(s, e) for s, e, t in broadcasts if t is None or uid in t])
        if events:
            out[uid] = [e for _, e in events]
    return out


def test_group_gives_each_uid_exactly_its_events_once_per_distinct_batch():
    rng = random.Random(17)
    for _ in range(300):
        universe = [f"u{i}" for i in range(rng.randint(0, 12))]
        by_uid = {u: None for u in universe if rng.random() < 0.7}
        sets = [frozenset(rng.sample(universe, rng.randint(0, len(universe)))) for _ in range(3)]
        private: dict[Any, list[tuple[int, Any]]] = {}
        broadcasts: list[tuple[int, Any, frozenset[Any] | None]] = []
        for seq in range(rng.randint(0, 8)):
            if universe and rng.random() < 0.5:
                for uid in rng.sample(universe, rng.randint(1, len(universe))):
                    private.setdefault(uid, []).append((seq, f"p{seq}"))
            else:
                broadcasts.append((seq, f"b{seq}", rng.choice([None, *sets])))
        groups = group(private, broadcasts, by_uid)
        got = {uid: events for events, uids in groups for uid in uids}
        assert got == reference(private, broadcasts, by_uid)
        assert sum(len(uids) for _, uids in groups) == len(got)  # every uid in one group
        assert len({tuple(events) for events, _ in groups}) == len(groups)  # every batch once
