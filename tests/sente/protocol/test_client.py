"""The client core as plain functions with a fake clock: no sockets, no event loop."""

from __future__ import annotations

import random
import re

import pytest

from csente.types import Keyword as K
from sente.packers import EdnPacker
from sente.protocol.client import (
    CLOSED,
    STATE,
    ClientConfig,
    ClientCore,
    Connect,
    Disconnect,
    Poll,
    Post,
    Receive,
    Reply,
    SendFrame,
    exp_backoff,
)
from sente.protocol.events import HANDSHAKE, TIMEOUT

P = EdnPacker()
HS = '[[:chsk/handshake ["alice" nil nil]] nil]'


def core(**options) -> ClientCore:
    return ClientCore(P, ClientConfig(**options), rng=random.Random(7), wall_clock=lambda: 1_000.0)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def events(actions):
    return [a.event for a in of(actions, Receive) if a.event[0] is not STATE]


def opened_ws(**options) -> ClientCore:
    c = core(type="ws", **options)
    c.start(0)
    c.ws_message(c.conn, HS, 1)
    c.take_actions()
    return c


def test_backoff_schedule_is_sentes():
    rng = random.Random(1)
    for n in range(2, 12):
        for _ in range(50):
            t = exp_backoff(n, rng)
            assert 500 * 2**n <= t < 1000 * 2**n
    assert exp_backoff(60, random.Random(0)) < 1000 * 2**36  # n capped at 36
    assert exp_backoff(10, random.Random(0), max_ms=3000) == 3000


def test_reconnect_first_immediate_then_backoff_with_injected_rng():
    c = core(type="ws")
    c.start(0)
    assert of(c.take_actions(), Connect) == [Connect(1)]
    c.ws_closed(c.conn, 10, 1006, "", False)  # attempt 1: immediate
    assert len(of(c.take_actions(), Connect)) == 1
    c.ws_closed(c.conn, 20, 1006, "", False)  # attempt 2: 2-4 s
    assert of(c.take_actions(), Connect) == []
    expected = exp_backoff(2, random.Random(7))
    assert c.next_deadline() == 20 + expected
    assert c.state.udt_next_reconnect == 1_000.0 + expected
    c.tick(20 + expected)
    assert len(of(c.take_actions(), Connect)) == 1
    c.ws_message(c.conn, HS, 5000)  # a handshake resets the counter
    assert c.attempt == 0


def test_capped_backoff_and_custom_fn():
    c = core(type="ws", backoff_ms_fn=lambda n: 100 * n)
    c.start(0)
    c.ws_closed(c.conn, 0, 1006)
    c.ws_closed(c.conn, 0, 1006)
    assert c.next_deadline() == 200


def test_handshake_state_keys_first_open_and_event():
    c = core(type="ws")
    c.start(0)
    c.take_actions()
    c.ws_message(c.conn, '[[:chsk/handshake ["bob" nil {:hsdata "x"}]] nil]', 1)
    acts = c.take_actions()
    change = next(a.event[1] for a in of(acts, Receive) if a.event[0] is STATE)
    assert change.opened and change.first_open and change.open_changed
    assert c.state.type == "ws" and c.state.open and c.state.ever_opened
    assert c.state.uid == "bob" and c.state.handshake_data == {K("hsdata"): "x"}
    assert events(acts) == [[HANDSHAKE, ["bob", None, {K("hsdata"): "x"}, True]]]
    # 2-element handshake data (Sente <= 1.20), after a reconnect: not first any more
    c.ws_closed(c.conn, 2, 1000, "", True)
    assert c.state.last_close.reason == "clean" and not c.state.open
    c.take_actions()
    c.ws_message(c.conn, '[[:chsk/handshake ["bob" nil]] nil]', 3)
    acts = c.take_actions()
    assert events(acts) == [[HANDSHAKE, ["bob", None, None, False]]]
    change = next(a.event[1] for a in of(acts, Receive) if a.event[0] is STATE)
    assert change.opened and not change.first_open


def test_ws_request_cb_id_reply_and_timeout():
    c = opened_ws()
    ok, key = c.send([K("test/echo"), 1], 10, reply=True, timeout_ms=100)
    assert ok and re.fullmatch(r"[0-9a-f]{6}", key)
    assert of(c.take_actions(), SendFrame) == [SendFrame(f'[[:test/echo 1] "{key}"]')]
    c.ws_message(c.conn, f'[1 "{key}"]', 20)
    assert of(c.take_actions(), Reply) == [Reply(key, 1)]
    c.ws_message(c.conn, f'[2 "{key}"]', 21)  # a second reply with the same id is ignored
    assert c.take_actions() == []
    _, key2 = c.send(["test/no-reply", 1], 30, reply=True, timeout_ms=100)
    c.take_actions()
    c.tick(130)
    assert of(c.take_actions(), Reply) == [Reply(key2, TIMEOUT)]


def test_send_without_reply_and_when_closed():
    c = opened_ws()
    assert c.send(["test/echo", 1], 0) == (True, None)
    assert of(c.take_actions(), SendFrame) == [SendFrame("[[:test/echo 1] nil]")]
    c2 = core(type="ws")
    ok, key = c2.send(["test/echo", 1], 0, reply=True, timeout_ms=10)
    assert not ok and of(c2.take_actions(), Reply) == [Reply(key, CLOSED)]


def test_close_settles_waiting_requests_with_closed():
    c = opened_ws()
    _, key = c.send(["test/no-reply", 1], 0, reply=True, timeout_ms=1000)
    c.take_actions()
    c.ws_closed(c.conn, 5, 1000, "", True)
    acts = c.take_actions()
    assert Reply(key, CLOSED) in acts and len(of(acts, Connect)) == 1


def test_server_ping_answered_with_pong_and_passed_on():
    c = opened_ws()
    c.ws_message(c.conn, "[:chsk/ws-ping nil]", 5)
    acts = c.take_actions()
    assert of(acts, SendFrame) == [SendFrame("[[:chsk/ws-pong] nil]")]
    assert events(acts) == [[K("chsk/ws-ping")]]


def test_client_keepalive_ping_only_when_idle_and_pong_keeps_it():
    c = opened_ws(ws_kalive_ms=200, ws_ping_timeout_ms=50)
    c.send(["a/b"], 50)  # activity within the first interval: no ping at 101
    c.take_actions()
    c.tick(101)
    assert of(c.take_actions(), SendFrame) == []
    c.tick(201)
    frames = of(c.take_actions(), SendFrame)
    m = re.fullmatch(r'\[\[:chsk/ws-ping\] "([0-9a-f]{6})"\]', frames[0].data)
    assert m
    c.ws_message(c.conn, f'["pong" "{m.group(1)}"]', 210)
    c.tick(260)
    assert c.state.open and not of(c.take_actions(), Disconnect)


def test_client_ping_timeout_reconnects():
    c = opened_ws(ws_kalive_ms=200, ws_ping_timeout_ms=50)
    c.tick(101)
    c.take_actions()
    c.tick(151)
    acts = c.take_actions()
    assert of(acts, Disconnect) and of(acts, Connect)
    assert c.state.last_close.reason == "ws-ping-timeout" and not c.state.open


def test_batch_unpacked_into_single_events_and_chsk_ids_refused():
    c = opened_ws()
    c.ws_message(c.conn, "[[[:test/pushed 1] [:test/pushed 2] [:chsk/nope 3] [:bad]] nil]", 5)
    assert events(c.take_actions()) == [
        [K("test/pushed"), 1], [K("test/pushed"), 2], [K("chsk/bad-event"), [K("bad")]],
    ]


def test_disconnect_stops_reconnects():
    c = opened_ws()
    old = c.conn
    c.disconnect(0)
    acts = c.take_actions()
    assert of(acts, Disconnect) == [Disconnect("ws", 1000, "CLOSE_NORMAL")]
    assert c.state.last_close.reason == "requested-disconnect"
    c.ws_closed(old, 1, 1000, "", True)  # the old connection's report is stale
    c.tick(10**9)
    assert of(c.take_actions(), Connect) == []


def test_break_connection_reconnects():
    c = opened_ws()
    c.break_connection(0)
    assert of(c.take_actions(), Disconnect) == [Disconnect("ws", 3000, "CLOSE_ABNORMAL")]
    c.ws_closed(c.conn, 1, 3000, "", True)
    assert len(of(c.take_actions(), Connect)) == 1


def test_ajax_poll_loop_handshake_param_only_while_closed():
    c = core(type="ajax")
    c.start(0)
    (poll,) = of(c.take_actions(), Poll)
    assert poll.handshake
    c.ajax_poll_done(poll.conn, 1, HS)
    (poll,) = of(c.take_actions(), Poll)
    assert not poll.handshake and c.state.open and c.state.type == "ajax"
    c.ajax_poll_done(poll.conn, 2, "[:chsk/timeout nil]")
    (poll,) = of(c.take_actions(), Poll)
    c.ajax_poll_done(poll.conn, 3, "[[[:test/pushed 1] [:test/pushed 2]] nil]")
    acts = c.take_actions()
    assert events(acts) == [[K("test/pushed"), 1], [K("test/pushed"), 2]] and len(of(acts, Poll)) == 1
    (poll,) = of(acts, Poll)
    c.ajax_poll_done(poll.conn, 4, timed_out=True)  # client-side timeout: re-poll at once
    (poll,) = of(c.take_actions(), Poll)
    c.ajax_poll_done(poll.conn, 5, error="refused")  # error: closed, immediate retry, then backoff
    (poll,) = of(c.take_actions(), Poll)
    assert poll.handshake and c.state.last_close.reason == "unexpected"
    c.ajax_poll_done(poll.conn, 6, error="refused")
    assert of(c.take_actions(), Poll) == [] and c.next_deadline() > 6


def test_ajax_post_cb_marker_and_results():
    c = core(type="ajax")
    c.start(0)
    c.ajax_poll_done(c.conn, 1, HS)
    c.take_actions()
    _, key = c.send(["test/echo", 1], 2, reply=True, timeout_ms=500)
    (post,) = of(c.take_actions(), Post)
    assert post.data == "[[:test/echo 1] :ajax]" and post.key == key
    c.ajax_post_done(key, 3, "[1 nil]")
    assert of(c.take_actions(), Reply) == [Reply(key, 1)]
    c.send(["test/echo", 1], 2)
    (post,) = of(c.take_actions(), Post)
    assert post.data == "[[:test/echo 1] nil]" and post.key is None
    _, key = c.send(["test/no-reply", 1], 2, reply=True, timeout_ms=500)
    c.take_actions()
    c.ajax_post_done(key, 3, "[:chsk/timeout nil]")  # the server's reply timeout
    assert of(c.take_actions(), Reply) == [Reply(key, TIMEOUT)]
    _, key = c.send(["test/echo", 1], 2, reply=True, timeout_ms=500)
    c.take_actions()
    c.ajax_post_done(key, 3, error=(403, b"no"))
    assert of(c.take_actions(), Reply)[0].value is K("chsk/error") and not c.state.open


def test_auto_downgrades_when_ws_fails_before_any_handshake():
    c = core(type="auto")
    c.start(0)
    (connect,) = of(c.take_actions(), Connect)
    c.ws_error(connect.conn, "refused", 1)
    c.ws_closed(connect.conn, 1, 1006)  # stale after the downgrade
    acts = c.take_actions()
    (poll,) = of(acts, Poll)
    assert poll.handshake and c.transport == "ajax" and not of(acts, Connect)
    assert c.state.last_close.reason == "downgrading-ws-to-ajax" and c.state.last_ws_error["ev"] == "refused"
    c.ajax_poll_done(poll.conn, 2, HS)
    assert c.state.type == "ajax" and c.state.open


def test_auto_never_downgrades_after_a_ws_handshake():
    c = core(type="auto")
    c.start(0)
    c.ws_message(c.conn, HS, 1)
    c.take_actions()
    c.ws_closed(c.conn, 2, 1006)
    (connect,) = of(c.take_actions(), Connect)
    c.ws_error(connect.conn, "refused", 3)
    c.ws_closed(connect.conn, 3, 1006)
    assert c.transport == "ws" and not of(c.take_actions(), Poll)  # retries WS with backoff, no downgrade
    c.tick(10**6)
    assert len(of(c.take_actions(), Connect)) == 1


def test_request_needs_a_timeout():
    with pytest.raises(ValueError):
        opened_ws().send(["a/b"], 0, reply=True)
