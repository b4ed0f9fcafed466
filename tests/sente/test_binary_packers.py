"""The msgpack packer and the gzip wrapper against real Sente 1.22 (../shared/vectors/msgpack and gzip):
envelopes and the frames a real server handed to its sockets, byte for byte; gzip below and above the
threshold, the JVM's gzip header, and lenient decoding of what other writers send."""

from __future__ import annotations

import contextlib
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csente.msgpack import EncodeError
from csente.types import DecodeError, Keyword
from sente.packers import (
    PACKER_NAMES,
    EdnPacker,
    GzipPacker,
    MsgpackPacker,
    Packer,
    TransitPacker,
    get_packer,
    gzip_compress,
)
from tests.vectors import VECTORS, from_json, same


def _load(name: str) -> dict[str, Any]:
    with open(VECTORS / name / "values.json", encoding="utf-8") as f:
        return dict(json.load(f))


MSGPACK = _load("msgpack")
GZIP = _load("gzip")
ENVELOPES = [c for c in MSGPACK["cases"] if c["kind"] == "envelope"]
K = Keyword


@pytest.mark.parametrize("case", ENVELOPES, ids=lambda c: c["id"])
def test_envelopes_and_server_frames_are_sentes_bytes(case: dict[str, Any]) -> None:
    packer = MsgpackPacker()
    payload, cb = from_json(case["json"], in_order=True)
    wire = packer.pack_envelope(payload, cb)
    assert wire.hex() == case["msgpack_hex"]
    assert same(list(packer.unpack_envelope(wire)), [payload, cb])
    if cb is None and isinstance(payload, list) and payload and all(isinstance(e, list) for e in payload):
        # a push batch: its events encoded once each, assembled with one key cache
        assert packer.pack_batch([packer.encode_event(e) for e in payload]).hex() == case["msgpack_hex"]


def test_a_push_holding_an_unsupported_value_is_refused_before_any_batch() -> None:
    # ../shared/vectors/msgpack m561: Sente's server sent nothing for such a push
    with pytest.raises(EncodeError):
        MsgpackPacker().encode_event([K("a/b"), [object()]])


def test_msgpack_packer_reads_binary_only() -> None:
    with pytest.raises(DecodeError, match="binary"):
        MsgpackPacker().unpack("92c0c0")


def test_every_name_makes_its_packer() -> None:
    for name in PACKER_NAMES:
        packer = get_packer(name)
        assert packer.name == name
        assert packer.binary == (name == "msgpack" or name.endswith("+gzip"))
    assert isinstance(get_packer("msgpack+gzip"), GzipPacker)


def _inner(name: str) -> Packer:
    return EdnPacker() if name == "edn" else MsgpackPacker()


def _gzip_value(case: dict[str, Any]) -> Any:
    if "gen" in case:
        gen = case["gen"]
        return [[K(gen["envelope_event"]), gen["str_repeat"] * gen["count"]], None]
    return from_json(case["json"], in_order=True)


GZIP_CASES = list(GZIP["cases"])


@pytest.mark.parametrize("case", GZIP_CASES, ids=lambda c: c["id"])
def test_gzip_output(case: dict[str, Any]) -> None:
    packer = GzipPacker(_inner(case["inner_packer"]))
    value = _gzip_value(case)
    ours = packer.pack(value)
    assert ours[0] == case["prefix"]
    if case["exact_bytes"]:
        assert ours.hex() == case["output_hex"]
    else:
        # the JVM's header (MTIME 0, XFL 0, OS 255), then a stream that inflates to the inner bytes
        assert ours[1:11].hex() == case["gzip"]["header_hex"]
        inner = zlib.decompress(ours[1:], 16 + zlib.MAX_WBITS)
        if "inner_hex" in case:
            assert inner.hex() == case["inner_hex"]
        elif "inner_sha256" in case:
            assert hashlib.sha256(inner).hexdigest() == case["inner_sha256"]
        assert ours[-4:] == (len(inner) & 0xFFFFFFFF).to_bytes(4, "little")
    expected = _gzip_value(case) if "gen" in case else from_json(case["json"])
    if "output_hex" in case:
        assert same(packer.unpack(bytes.fromhex(case["output_hex"])), expected)
    assert same(packer.unpack(ours), expected)


@pytest.mark.parametrize("case", GZIP["decode_cases"], ids=lambda c: c["id"])
def test_gzip_lenient_decoding(case: dict[str, Any]) -> None:
    packer = GzipPacker(_inner(case["inner_packer"]))
    data = bytes.fromhex(case["hex"])
    if case["ok"]:
        assert same(packer.unpack(data), from_json(case["json"]))
    else:
        with pytest.raises(DecodeError):
            packer.unpack(data)


def test_gzip_reads_binary_only_and_bounds_inflation() -> None:
    packer = GzipPacker(MsgpackPacker(), max_unpacked=10_000)
    with pytest.raises(DecodeError, match="binary"):
        packer.unpack("00c0")
    bomb = packer.pack(["a" * 100_000])
    assert len(bomb) < 1000
    with pytest.raises(DecodeError, match="inflates beyond"):
        packer.unpack(bomb)


@pytest.mark.parametrize("inner", [EdnPacker(), TransitPacker(), MsgpackPacker()], ids=lambda p: p.name)
def test_gzip_batches_are_compressed_once_from_the_inner_batch(inner: Packer) -> None:
    packer = GzipPacker(inner)
    events = [[K("test/pushed"), {K("i"): i, K("name"): f"user-{i}"}] for i in range(60)]
    batch = packer.pack_batch([packer.encode_event(e) for e in events])
    assert batch[0] == 1  # above the threshold
    assert packer.unpack_envelope(batch).payload == events
    small = packer.pack_batch([packer.encode_event(events[0])])
    assert small[0] == 0 and packer.unpack(small) == [[events[0]], None]


def test_the_readme_custom_packer_keeps_the_batch_contract() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    code = text.split("### Writing your own packer", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    packer = namespace["JsonPacker"]()
    events = [[K("chat/msg"), {K("text"): "hi"}], [K("chat/msg"), {K("text"): "bye"}]]
    batch = packer.pack_batch([packer.encode_event(e) for e in events])
    assert batch == packer.pack([events, None])
    assert packer.unpack_envelope(packer.pack_envelope([K("my/ev"), {"x": 1}])).payload == [K("my/ev"), {"x": 1}]
    with pytest.raises(DecodeError):
        packer.unpack("not json")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(["edn+gzip", "msgpack+gzip", "transit+gzip"]))
def test_any_bytes_unpack_or_fail_with_decode_error(data: bytes, name: str) -> None:
    packer = get_packer(name)
    for candidate in (data, b"\x01" + gzip_compress(data), b"\x01" + gzip_compress(data)[: len(data) // 2]):
        with contextlib.suppress(DecodeError):
            packer.unpack(candidate)
