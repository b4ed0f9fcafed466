"""Packers against what a real Sente 1.22 server put on the wire (../shared/vectors/wire), plus envelope rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from csente.types import DecodeError, Keyword, List
from sente.packers import EdnPacker, Envelope, Packer, TransitPacker, get_packer
from tests.vectors import VECTORS


def _server_messages() -> list[Any]:
    """Every packed message a real server wrote: WS text frames and 200 bodies of Sente's /chsk endpoint."""
    params = []
    for path in sorted((VECTORS / "wire").glob("*.jsonl")):
        packer = "transit" if path.name.startswith("transit-") else "edn"
        requests: dict[int, dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            requests[rec["seq"]] = rec
            if rec["dir"] != "s2c":
                continue
            if rec["kind"] == "ws_frame" and rec.get("frame") == "text":
                pass
            elif rec["kind"] == "http_response" and rec.get("status") == 200:
                request = requests.get(rec.get("in_reply_to", -1), {})
                if request.get("path") != "/chsk":
                    continue
            else:
                continue
            params.append(pytest.param(packer, rec["raw"], id=f"{path.stem}-{rec['seq']}"))
    return params


SERVER_MESSAGES = _server_messages()


def test_the_wire_vectors_were_found():
    assert len(SERVER_MESSAGES) > 50


@pytest.mark.parametrize(("packer_name", "raw"), SERVER_MESSAGES)
def test_every_server_message_repacks_byte_identically(packer_name: str, raw: str) -> None:
    packer = get_packer(packer_name)
    envelope = packer.unpack_envelope(raw)
    assert packer.pack_envelope(envelope.payload, envelope.cb_id) == raw


def _is_push_batch(envelope: Envelope) -> bool:
    return (
        envelope.cb_id is None
        and isinstance(envelope.payload, list)
        and len(envelope.payload) > 0
        and all(
            isinstance(ev, list) and isinstance(ev[0], Keyword) and ev[0].ns not in (None, "chsk")
            for ev in envelope.payload
        )
    )


@pytest.mark.parametrize(("packer_name", "raw"), SERVER_MESSAGES)
def test_push_batches_assemble_from_separately_encoded_events(packer_name: str, raw: str) -> None:
    packer = get_packer(packer_name)
    envelope = packer.unpack_envelope(raw)
    if not _is_push_batch(envelope):
        return
    assert packer.pack_batch([packer.encode_event(ev) for ev in envelope.payload]) == raw


@pytest.mark.parametrize("packer", [EdnPacker(), TransitPacker(), TransitPacker("json-verbose")], ids=str)
def test_writers_always_write_two_elements(packer: Packer) -> None:
    ping = packer.pack_envelope(Keyword("chsk/ws-ping"))
    assert packer.unpack(ping) == [Keyword("chsk/ws-ping"), None]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('[[:test/echo "no-cb"]]', Envelope([Keyword("test/echo"), "no-cb"], None)),
        ('[[:test/echo 1] "abc123" :extra]', Envelope([Keyword("test/echo"), 1], "abc123")),
        ("[[:test/echo 2] 0]", Envelope([Keyword("test/echo"), 2], 0)),
        ("[]", Envelope(None, None)),
        ("([:test/echo 3] :ajax)", Envelope([Keyword("test/echo"), 3], Keyword("ajax"))),
    ],
)
def test_readers_accept_short_long_and_legacy_envelopes(raw: str, expected: Envelope) -> None:
    assert EdnPacker().unpack_envelope(raw) == expected


@pytest.mark.parametrize("raw", ["this is not edn [", ":kw", "42", '"str"', "{:a 1}"])
def test_a_non_vector_is_not_an_envelope(raw: str) -> None:
    with pytest.raises(DecodeError):
        EdnPacker().unpack_envelope(raw)


def test_edn_packer_refuses_binary_frames_like_sente():
    with pytest.raises(DecodeError):
        EdnPacker().unpack(b"[[:a/b 1] nil]")


def test_edn_packer_reads_nothing_as_nil():
    assert EdnPacker().unpack("") is None


def test_transit_msgpack_packer_is_binary():
    packer = TransitPacker("msgpack")
    assert packer.binary and not TransitPacker().binary and not EdnPacker().binary
    wire = packer.pack_envelope([Keyword("my/ev"), {Keyword("x"): 1}], "a1b2c3")
    assert isinstance(wire, bytes)
    assert packer.unpack_envelope(wire) == Envelope([Keyword("my/ev"), {Keyword("x"): 1}], "a1b2c3")


def test_edn_packer_tag_readers_and_writers_are_passed_through():
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    packer = EdnPacker(
        tag_readers={"my/money": lambda cents: Money(cents)},
        writers={Money: lambda m: ("my/money", m.cents)},
    )
    wire = packer.pack_envelope([Keyword("shop/paid"), Money(250)])
    assert wire == "[[:shop/paid #my/money 250] nil]"
    assert packer.unpack_envelope(wire).payload[1].cents == 250


def test_unknown_tags_are_an_error_by_default_as_in_sente():
    with pytest.raises(DecodeError):
        EdnPacker().unpack("[[:a/b #unknown/tag 1] nil]")


def test_get_packer_by_name_or_instance():
    packer = TransitPacker("json-verbose")
    assert get_packer(packer) is packer
    assert isinstance(get_packer(), EdnPacker)
    assert isinstance(get_packer("transit"), TransitPacker)
    with pytest.raises(ValueError, match="unknown packer"):
        get_packer("msgpack+zstd")


def test_list_envelopes_are_read_positionally():
    assert EdnPacker().unpack_envelope("((1 2) nil)").payload == List([1, 2])
