"""Client-side conformance: the requests and frames our client sends match the recorded ``c2s`` records.

For each scenario the client can drive, the recorded client messages are replayed *through our client's
API* (``request`` when the recorded envelope had a cb slot, ``send`` when nil), against our server, and
what the client puts on the wire (its trace) is compared with the recording after normalising the
per-run values: cb-ids (6 hex), client-id, CSRF token, ``udt``. Compared: WS upgrade query names, order
and values; frame texts; Ajax GET query names/order (``handshake%3F=1`` only while not open); POST form
fields ``udt``/``client-id``/``ppstr``; the ``X-Requested-With``/``X-CSRF-Token``/``Content-Type``
headers. Recorded frames a Sente client never sends (malformed, 1-element envelopes) are not driven.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from csente.types import Keyword as K
from sente.client import WireRecord, connect
from sente.packers import EdnPacker
from sente.protocol.events import WS_PING, WS_PONG, is_event
from tests.sente.conformance.replay import WIRE

from .helpers import Server, run, session

P = EdnPacker()
CB = re.compile(r'"[0-9a-f]{6}"\]$')
OURS = ("X-Requested-With", "X-CSRF-Token", "Content-Type")


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.stop()


def recorded(name: str) -> list[dict]:
    with open(WIRE / f"{name}.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["dir"] == "c2s" and r.get("conn") == "A" and r.get("path") != "/csrf-token"]


def canonical(raw: str) -> str:
    """The recorded text as Sente's printer writes it (the capture client wrote one string with a ``\\u00e9``
    escape, which pr-str never does); every other recorded frame is already canonical."""
    return P.pack(P.unpack(raw))


def norm_frame(raw: str) -> str:
    return CB.sub('"CB"]', raw)


def norm_pairs(pairs, token: str, client_id: str) -> list[tuple[str, str]]:
    out = []
    for k, v in pairs:
        if k == "udt":
            v = "UDT" if v.isdigit() else v
        elif k == "client-id":
            v = "CID" if v == client_id else v
        elif k == "csrf-token":
            v = "TOKEN" if v == token else v
        elif k == "ppstr":
            v = norm_frame(v)
        out.append((k, v))
    return out


def norm_headers(headers, token: str) -> list[tuple[str, str]]:
    return [(k, "TOKEN" if k == "X-CSRF-Token" and v == token else v) for k, v in headers if k in OURS]


def drivable(raw: str, transport: str = "ws"):
    """(event, wants_reply) for a frame/ppstr a Sente client would send, else None."""
    try:
        value = P.unpack(raw)
    except Exception:
        return None
    if not isinstance(value, list) or len(value) != 2 or not is_event(value[0]):
        return None
    payload, cb = value
    if payload[0] in (WS_PING, WS_PONG):
        return None
    if cb is None:
        return payload, False
    if cb is K("ajax") if transport == "ajax" else isinstance(cb, str) and re.fullmatch("[0-9a-f]{6}", cb):
        return payload, True
    return None


async def drive(server: Server, name: str, type: str, **options) -> tuple[list[WireRecord], dict]:
    trace: list[WireRecord] = []
    opts = await session(server)
    async with connect(server.url, type=type, params={"uid": "alice"}, str_keys=False, trace=trace.append,
                       **opts, **options) as c:
        pending = []
        for r in recorded(name):
            raw = r["raw"] if r["kind"] == "ws_frame" else dict(r.get("form") or []).get("ppstr")
            if not raw or (r["kind"] == "ws_frame") != (type == "ws"):
                continue
            d = drivable(raw, type)
            if d is None:
                continue
            event, reply = d
            if reply:
                pending.append(asyncio.ensure_future(c.request(event, timeout=3)))
            else:
                c.send(event)
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending, return_exceptions=True)
        if options.get("ws_kalive_ms"):
            await c.wait_for(lambda s: any(t.raw.startswith("[[:chsk/ws-ping]") for t in trace
                                           if t.kind == "ws_frame"), 3)
        ids = {"token": opts["csrf_token"], "client_id": c.client_id}
    return trace, ids


def rec_ids(name: str) -> dict:
    recs = recorded(name)
    q = dict(next(r for r in recs if r.get("query") and r["path"] == "/chsk")["query"])
    hdr = dict(next(r for r in recs if r.get("path") == "/chsk")["headers"])
    return {"token": q.get("csrf-token") or hdr.get("X-CSRF-Token"), "client_id": q["client-id"]}


@pytest.mark.parametrize("name", ["ws-handshake", "ws-echo-reply", "ws-client-ping", "ws-push-me", "ws-batched"])
def test_ws_scenarios(server, name):
    kalive = {"ws_kalive_ms": 200} if name == "ws-client-ping" else {}
    trace, ids = run(drive(server, name, "ws", **kalive))
    want_ids = rec_ids(name)
    recs = recorded(name)
    up = next(r for r in recs if r["kind"] == "ws_upgrade_request")
    ours_up = next(t for t in trace if t.kind == "ws_upgrade_request")
    assert norm_pairs(ours_up.query, ids["token"], ids["client_id"]) == norm_pairs(
        up["query"], want_ids["token"], want_ids["client_id"])
    want = [norm_frame(canonical(r["raw"])) for r in recs if r["kind"] == "ws_frame" and drivable(r["raw"])]
    ours = [norm_frame(t.raw) for t in trace if t.kind == "ws_frame" and t.dir == "c2s"]
    if name == "ws-client-ping":
        want = ['[[:chsk/ws-ping] "CB"]']  # the keep-alive ping with a cb; its "pong" answer keeps us open
        assert '[[:chsk/ws-ping] "CB"]' in ours
        ours = ours[:1]
    assert ours == want


@pytest.mark.parametrize("name", ["ajax-handshake", "ajax-echo-reply", "ajax-poll-push", "ajax-unknown-event"])
def test_ajax_scenarios(server, name):
    trace, ids = run(drive(server, name, "ajax"))
    want_ids = rec_ids(name)
    recs = [r for r in recorded(name) if r["kind"] == "http_request" and r["path"] == "/chsk"]
    tok, cid = ids["token"], ids["client_id"]
    rtok, rcid = want_ids["token"], want_ids["client_id"]
    ours = [t for t in trace if t.kind == "http_request"]
    # GETs: the first is the handshake poll (handshake?=1), the next a plain long-poll, same headers
    rgets = [r for r in recs if r["method"] == "GET"]
    ogets = [t for t in ours if t.method == "GET"]
    assert norm_pairs(ogets[0].query, tok, cid) == norm_pairs(rgets[0]["query"], rtok, rcid)
    plain = [r for r in rgets if ("handshake?", "1") not in [tuple(p) for p in r["query"]]]
    if plain:
        assert norm_pairs(ogets[1].query, tok, cid) == norm_pairs(plain[0]["query"], rtok, rcid)
    assert norm_headers(ogets[0].headers, tok) == norm_headers(rgets[0]["headers"], rtok)
    # POSTs: only those a Sente client sends; form fields and headers as recorded
    rposts = [r for r in recs if r["method"] == "POST" and drivable(dict(r.get("form") or []).get("ppstr", ""), "ajax")]
    assert rposts
    oposts = [t for t in ours if t.method == "POST"]
    assert [norm_pairs(t.form, tok, cid) for t in oposts] == [norm_pairs(r["form"], rtok, rcid) for r in rposts]
    for t, r in zip(oposts, rposts, strict=True):
        assert norm_headers(t.headers, tok) == norm_headers(r["headers"], rtok)
        assert t.raw == _body(r, rtok, rcid, t)


def _body(r: dict, rtok: str, rcid: str, ours: WireRecord) -> str:
    """The recorded form body with the recorded udt/client-id swapped for ours (the encoding must match)."""
    body = r["raw"]
    rf, of = dict(r["form"]), dict(ours.form or ())
    return body.replace(rf["udt"], of["udt"], 1).replace(rcid, of["client-id"], 1)
