"""RemoteView, the other nodes' presence as one worker sees it: a snapshot, then change messages."""

from __future__ import annotations

from sente.cluster.redis.view import RemoteView


def test_uids_are_one_set_until_a_change_message_or_snapshot_changes_them() -> None:
    view = RemoteView("here")
    view.load([b"5", b"there|0", [b'"alice"', b"1", b'"bob"', b"2"], b"here|0", [b'"me"', b"1"]])
    first = view.uids("any")
    assert first == {"alice", "bob"} and view.uids("ws") == {"alice"} and view.uids("ajax") == {"bob"}
    assert view.uids("any") is first  # nothing changed: no new set
    assert view.apply(b"5 there|0 1 \"carl\"") is False and view.uids("any") is first  # older than the snapshot
    view.apply(b"6 there|0 1 \"carl\"")
    assert view.uids("any") == {"alice", "bob", "carl"} and view.uids("ws") == {"alice", "carl"}
    view.apply(b"7 there|0 0 \"alice\"")
    assert view.uids("any") == {"bob", "carl"}
    view.apply(b"8 there|0 - x")  # the member left: everything it held goes
    assert view.uids("any") == frozenset()
    view.load([b"9", b"there|1", [b'"dan"', b"3"]])
    assert view.uids("ajax") == {"dan"}
    view.clear()
    assert view.uids("any") == frozenset()
