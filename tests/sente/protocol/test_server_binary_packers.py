"""The server core with binary packers: bytes out (binary frames, octet-stream Ajax bodies), bytes in (binary
frames, raw POST bodies with ``binary?=true``), and pushes the packer refuses dropped and counted, whole."""

from __future__ import annotations

from csente.types import Keyword
from sente.metrics import counters
from sente.packers import GzipPacker, MsgpackPacker, Packer, TransitPacker, get_packer
from sente.protocol.config import ServerConfig
from sente.protocol.requests import Request
from sente.protocol.server import Respond, ServerCore

from .test_server import TOKEN, events, open_ws, sends

K = Keyword


def make(packer: Packer) -> ServerCore:
    return ServerCore(packer, ServerConfig())


def test_msgpack_handshake_and_push_batch_are_sentes_binary_frames() -> None:
    core = make(MsgpackPacker())
    # ../shared/vectors/msgpack m562 and m563: what Sente's server handed to sch-send!
    assert sends(open_ws(core, "A")) == [
        (("A",), bytes.fromhex("9292c70e006368736b2f68616e647368616b6593a5616c696365c0c0c0"))
    ]
    core.send("alice", [K("a/b"), 1], 0)
    core.send("alice", [K("c/d"), "x"], 1, flush=True)
    assert sends(core.take_actions()) == [(("A",), bytes.fromhex("929292c70300612f620192c70300632f64a178c0"))]


def test_binary_frames_are_read_and_replied_to_in_binary() -> None:
    core = make(get_packer("msgpack+gzip"))
    open_ws(core, "A")
    packer = core.packer
    core.ws_message("A", packer.pack_envelope([K("my/ev"), {K("x"): 1}], "cb1"), 0)
    (msg,) = events(core.take_actions())
    assert msg.event == [K("my/ev"), {K("x"): 1}]
    msg.reply({K("echo"): "y" * 2000})
    ((_, data),) = sends(core.take_actions())
    assert isinstance(data, bytes) and data[0] == 1  # above the threshold: gzipped
    assert packer.unpack_envelope(data) == ({K("echo"): "y" * 2000}, "cb1")


def _binary_post(body: bytes) -> Request:
    return Request(
        "POST", "/chsk", query=[("client-id", "c1"), ("binary?", "true")], headers=[("X-CSRF-Token", TOKEN)],
        body=body, session={"uid": "alice", "csrf-token": TOKEN},
    )


def test_binary_ajax_post_and_its_octet_stream_answer() -> None:
    for packer in (MsgpackPacker(), GzipPacker(get_packer("edn"))):
        core = make(packer)
        core.ajax_post("P", _binary_post(packer.pack_envelope([K("my/ev"), 1], K("ajax"))), 0)
        (msg,) = events(core.take_actions())
        assert msg.event == [K("my/ev"), 1]
        msg.reply("ok")
        (respond,) = [a for a in core.take_actions() if isinstance(a, Respond)]
        assert respond.response.headers == (("Content-Type", "application/octet-stream"),)
        assert packer.unpack_envelope(respond.response.body) == ("ok", None)


def test_an_unreadable_binary_post_is_a_500_and_counted() -> None:
    core = make(MsgpackPacker())
    before = counters().decode_errors
    core.ajax_post("P", _binary_post(b"\xc1"), 0)
    (respond,) = [a for a in core.take_actions() if isinstance(a, Respond)]
    assert respond.response.status == 500 and counters().decode_errors == before + 1


def _refused_push_is_dropped_and_counted(packer: Packer) -> None:
    core = make(packer)
    open_ws(core, "A")
    before = counters().pack_errors
    core.send("alice", [K("a/b"), 1], 0)
    core.send("alice", [K("bad/ev"), object()], 1)
    core.broadcast([K("bad/ev"), {K("x"): object()}], 2)
    core.send("alice", [K("c/d"), "x"], 3, flush=True)
    batches = [data for _, data in sends(core.take_actions())]
    assert counters().pack_errors > before
    for data in batches:  # whatever went out is complete and readable, with no trace of the refused events
        for event in packer.unpack_envelope(data).payload:
            assert event[0] is not K("bad/ev")


def test_a_push_msgpack_refuses_is_dropped_at_send_time_and_the_others_go_out() -> None:
    core = make(MsgpackPacker())
    open_ws(core, "A")
    before = counters().pack_errors
    core.send("alice", [K("a/b"), 1], 0)
    assert core.send("alice", [K("bad/ev"), object()], 1) is False
    core.broadcast([K("bad/ev"), {K("x"): object()}], 2)
    core.send("alice", [K("c/d"), "x"], 3, flush=True)
    assert counters().pack_errors == before + 2
    assert sends(core.take_actions()) == [(("A",), bytes.fromhex("929292c70300612f620192c70300632f64a178c0"))]


def test_a_batch_transit_refuses_at_flush_is_dropped_whole_and_counted() -> None:
    # transit encodes at batch time: the whole batch holding the bad event is dropped, as Sente drops it
    _refused_push_is_dropped_and_counted(TransitPacker())


def test_gzip_over_msgpack_refuses_like_msgpack() -> None:
    _refused_push_is_dropped_and_counted(get_packer("msgpack+gzip"))


