"""The server protocol core, driven as plain function calls with a hand-moved clock (times in ms)."""

from __future__ import annotations

from typing import Any

import pytest

from csente.types import Keyword
from sente.packers import EdnPacker, TransitPacker
from sente.protocol.config import Response, ServerConfig
from sente.protocol.requests import Request
from sente.protocol.server import Close, Dispatch, EventMsg, Respond, Send, ServerCore

K = Keyword
TOKEN = "tok-123"


def request(
    uid: str | None = "alice", client_id: str | None = "c1", token: str | None = TOKEN, **params: str
) -> Request:
    query = [(k, v) for k, v in [("client-id", client_id), ("csrf-token", token), *params.items()] if v is not None]
    session: dict[str, Any] = {"csrf-token": TOKEN}
    if uid is not None:
        session["uid"] = uid
    return Request("GET", "/chsk", query=query, session=session)


def post(ppstr: str | None, uid: str = "alice", client_id: str | None = "c1", token: str | None = TOKEN) -> Request:
    form = [(k, v) for k, v in [("client-id", client_id), ("ppstr", ppstr)] if v is not None]
    headers = [("X-CSRF-Token", token)] if token else []
    return Request("POST", "/chsk", form=form, headers=headers, session={"uid": uid, "csrf-token": TOKEN})


def make(**config: Any) -> ServerCore:
    return ServerCore(EdnPacker(), ServerConfig(**config))


def sends(actions: list[Any]) -> list[tuple[tuple[Any, ...], str | bytes]]:
    return [(a.handles, a.data) for a in actions if isinstance(a, Send)]


def responds(actions: list[Any]) -> list[tuple[Any, int, str | bytes]]:
    return [(a.handle, a.response.status, a.response.body) for a in actions if isinstance(a, Respond)]


def events(actions: list[Any]) -> list[EventMsg]:
    return [a.msg for a in actions if isinstance(a, Dispatch)]


def open_ws(core: ServerCore, handle: str, now: float = 0, **kw: Any) -> list[Any]:
    req = request(**kw)
    assert core.ws_accept(req) is None
    core.ws_open(handle, req, now)
    return core.take_actions()


# ---------------------------------------------------------------- handshake and registration


def test_ws_open_sends_the_handshake_then_announces_the_uid():
    core = make()
    actions = open_ws(core, "A")
    assert sends(actions) == [(("A",), '[[:chsk/handshake ["alice" nil nil]] nil]')]
    assert [m.event for m in events(actions)] == [[K("chsk/uidport-open"), "alice"]]
    assert actions.index(next(a for a in actions if isinstance(a, Send))) == 0


def test_the_connection_is_registered_before_the_handshake_goes_out():
    core = make()
    core.ws_open("A", request(), 0)
    # nothing has been written yet, but the uid is already reachable
    assert core.is_connected("alice")
    assert core.send("alice", [K("test/pushed"), 1], 0)


def test_a_missing_uid_is_sentes_nil_uid():
    core = make()
    actions = open_ws(core, "A", uid=None)
    assert sends(actions)[0][1] == "[[:chsk/handshake [:sente/nil-uid nil nil]] nil]"


def test_handshake_data_is_the_third_element():
    core = make(handshake_data_fn=lambda req: {K("hsdata"): req.param("hsdata")})
    actions = open_ws(core, "A", hsdata="x")
    assert sends(actions)[0][1] == '[[:chsk/handshake ["alice" nil {:hsdata "x"}]] nil]'


def test_transit_handshake():
    core = ServerCore(TransitPacker(), ServerConfig())
    core.ws_open("A", request(), 0)
    assert sends(core.take_actions())[0][1] == '[["~:chsk/handshake",["alice",null,null]],null]'


# ---------------------------------------------------------------- security, in Sente's order


def test_a_request_without_client_id_is_a_500_before_any_other_check():
    response = make().ws_accept(request(client_id=None, token=None))
    assert response is not None and response.status == 500
    assert "doesn't have a client id" in str(response.body)


def test_a_wrong_or_missing_csrf_token_is_refused():
    core = make()
    for token in ("wrong", None):
        assert core.ws_accept(request(token=token)) == Response(403, "Bad CSRF token")


def test_the_csrf_token_may_come_in_a_header():
    req = request(token=None)
    req.headers = [("X-CSRF-Token", TOKEN)]
    assert make().ws_accept(req) is None


def test_no_reference_token_refuses_and_a_csrf_fn_of_none_disables_the_check():
    assert make(csrf_token_fn=lambda r: None).ws_accept(request()) == Response(403, "Bad CSRF token")
    assert make(csrf_token_fn=None).ws_accept(request(token=None)) is None


def test_origin_must_be_allowed_with_a_referer_fallback():
    core = make(allowed_origins={"https://site.com"})
    req = request()
    assert core.ws_accept(req) == Response(403, "Unauthorized origin")
    req.headers = [("Origin", "https://site.com")]
    assert core.ws_accept(req) is None
    req.headers = [("Referer", "https://site.com.evil.com/")]
    assert core.ws_accept(req) == Response(403, "Unauthorized origin")
    req.headers = [("Referer", "https://site.com/page")]
    assert core.ws_accept(req) is None


def test_checks_run_reject_fn_then_csrf_then_origin_then_authorized():
    teapot = Response(418, "no")
    core = make(reject_fn=lambda r: teapot, allowed_origins=set(), authorized_fn=lambda r: False)
    assert core.ws_accept(request(token="bad")) == teapot
    core = make(allowed_origins=set(), authorized_fn=lambda r: False)
    assert core.ws_accept(request(token="bad")).status == 403  # type: ignore[union-attr]
    assert core.ws_accept(request()) == Response(403, "Unauthorized origin")
    core = make(authorized_fn=lambda r: False)
    assert core.ws_accept(request()) == Response(401, "Unauthorized request")


# ---------------------------------------------------------------- events from a WebSocket client


def test_an_event_with_a_cb_id_gets_a_reply_that_echoes_the_id_verbatim():
    core = make()
    open_ws(core, "A")
    for cb in ('"a1b2c3"', '"my-long-callback-id-123"', "12345", "0", '""'):  # Clojure truthiness: 0 and "" are true
        core.ws_message("A", f"[[:test/echo {{:a 1}}] {cb}]", 1)
        (msg,) = events(core.take_actions())
        assert (msg.id, msg.data, msg.uid, msg.client_id) == (K("test/echo"), {K("a"): 1}, "alice", "c1")
        assert msg.reply is not None and msg.reply(msg.data)
        assert sends(core.take_actions()) == [(("A",), f"[{{:a 1}} {cb}]")]


@pytest.mark.parametrize("cb", ["nil", "false"])
def test_an_event_without_cb_id_has_no_reply(cb: str):
    core = make()
    open_ws(core, "A")
    core.ws_message("A", f"[[:test/no-reply 1] {cb}]", 1)
    (msg,) = events(core.take_actions())
    assert msg.reply is None


def test_a_false_cb_marker_on_a_post_gets_the_dummy_ack():
    core = make()
    core.ajax_post("p1", post("[[:test/echo 2] false]"), 0)
    actions = core.take_actions()
    assert responds(actions) == [("p1", 200, "[:chsk/dummy-cb-200 nil]")]
    assert events(actions)[0].reply is None


def test_a_reply_after_the_connection_closed_goes_nowhere():
    core = make()
    open_ws(core, "A")
    core.ws_message("A", '[[:test/echo 1] "cb1"]', 1)
    (msg,) = events(core.take_actions())
    core.ws_close("A", 2)
    assert msg.reply is not None and msg.reply(1) is False
    assert sends(core.take_actions()) == []


def test_replies_wake_the_transport_up():
    core = make()
    woken: list[int] = []
    core.on_output = lambda: woken.append(1)
    open_ws(core, "A")
    core.ws_message("A", '[[:test/echo 1] "cb1"]', 1)
    (msg,) = events(core.take_actions())
    assert msg.reply is not None
    msg.reply(1)
    assert woken == [1]


def test_client_ping_with_cb_is_answered_pong_and_routed_without_reply():
    core = make()
    open_ws(core, "A")
    core.ws_message("A", '[[:chsk/ws-ping] "p1p1p1"]', 1)
    actions = core.take_actions()
    assert sends(actions) == [(("A",), '["pong" "p1p1p1"]')]
    assert [(m.event, m.reply) for m in events(actions)] == [([K("chsk/ws-ping")], None)]


def test_client_ping_without_cb_and_pong_are_routed_silently():
    core = make()
    open_ws(core, "A")
    core.ws_message("A", "[[:chsk/ws-ping] nil]", 1)
    core.ws_message("A", "[[:chsk/ws-pong] nil]", 1)
    actions = core.take_actions()
    assert sends(actions) == []
    assert [m.event for m in events(actions)] == [[K("chsk/ws-ping")], [K("chsk/ws-pong")]]


@pytest.mark.parametrize("frame", ["[[:test/echo 1", "{:not [closed", "42", '"str"', "#foo/bar 1", b"[[:a/b 1] nil]"])
def test_an_unreadable_frame_is_dropped_and_the_connection_survives(frame: str | bytes):
    core = make()
    open_ws(core, "A")
    core.ws_message("A", frame, 1)
    assert core.take_actions() == []
    core.ws_message("A", '[[:test/echo :still-alive] "cb"]', 2)
    assert len(events(core.take_actions())) == 1


@pytest.mark.parametrize(
    ("frame", "wrapped"),
    [
        ('[[:noevent 1] "cb"]', "[:noevent 1]"),
        ('[["str" 1] "cb"]', '["str" 1]'),
        ('[[:test/echo 1 2] "cb"]', "[:test/echo 1 2]"),
        ("[nil nil]", "nil"),
    ],
)
def test_invalid_events_arrive_as_bad_event_keeping_the_reply(frame: str, wrapped: str):
    core = make()
    open_ws(core, "A")
    core.ws_message("A", frame, 1)
    (msg,) = events(core.take_actions())
    assert msg.id == K("chsk/bad-event")
    assert EdnPacker().pack(msg.data) == wrapped
    assert (msg.reply is not None) == ('"cb"' in frame)


def test_client_sent_system_events_cannot_pose_as_system_events():
    core = make()
    open_ws(core, "A")
    core.ws_message("A", '[[:chsk/uidport-close "bob"] nil]', 1)
    (msg,) = events(core.take_actions())
    assert msg.event == [K("chsk/bad-event"), [K("chsk/uidport-close"), "bob"]]


# ---------------------------------------------------------------- pushes


def test_pushes_within_the_window_go_out_as_one_batch_to_every_tab():
    core = make()
    open_ws(core, "A", client_id="tab1")
    open_ws(core, "B", client_id="tab2")
    for i in range(3):
        assert core.send("alice", [K("test/pushed"), i], 10 + i)
    assert core.next_deadline() is not None
    core.tick(39)
    assert sends(core.take_actions()) == []
    core.tick(40)
    assert sends(core.take_actions()) == [
        (("A", "B"), "[[[:test/pushed 0] [:test/pushed 1] [:test/pushed 2]] nil]")
    ]


def test_event_ids_may_be_strings():
    core = make()
    open_ws(core, "A")
    core.send("alice", ["test/pushed", "x"], 0, flush=True)
    assert sends(core.take_actions()) == [(("A",), '[[[:test/pushed "x"]] nil]')]


def test_flush_true_sends_everything_pending_at_once_in_order():
    core = make()
    open_ws(core, "A")
    core.send("alice", [K("test/pushed"), 1], 0)
    core.send("alice", [K("test/pushed"), 2], 1, flush=True)
    assert sends(core.take_actions()) == [(("A",), "[[[:test/pushed 1] [:test/pushed 2]] nil]")]


def test_send_to_a_uid_without_connections_returns_false():
    core = make()
    assert core.send("nobody", [K("test/pushed"), 1], 0) is False


def test_send_rejects_a_missing_uid_and_invalid_events():
    core = make()
    with pytest.raises(ValueError):
        core.send(None, [K("test/pushed"), 1], 0)
    for bad in ([K("no-ns"), 1], "test/pushed", [K("a/b"), 1, 2], ["no-namespace"]):
        with pytest.raises(ValueError):
            core.send("alice", bad, 0)


def test_a_broadcast_is_packed_once_for_every_recipient():
    core = make()
    open_ws(core, "A", uid="alice")
    open_ws(core, "B", uid="bob", client_id="c2")
    core.broadcast([K("test/broadcast"), {K("from"): "alice"}], 0)
    core.tick(30)
    assert sends(core.take_actions()) == [(("A", "B"), '[[[:test/broadcast {:from "alice"}]] nil]')]


def test_pushes_and_broadcasts_keep_their_order_per_client():
    core = make()
    open_ws(core, "A", uid="alice")
    open_ws(core, "B", uid="bob", client_id="c2")
    core.send("alice", [K("t/a"), 1], 0)
    core.broadcast([K("t/all"), 2], 1)
    core.send("alice", [K("t/a"), 3], 2)
    core.tick(30)
    assert sorted(sends(core.take_actions())) == [
        (("A",), "[[[:t/a 1] [:t/all 2] [:t/a 3]] nil]"),
        (("B",), "[[[:t/all 2]] nil]"),
    ]


def test_a_broadcast_to_chosen_uids_reaches_only_them():
    core = make()
    open_ws(core, "A", uid="alice")
    open_ws(core, "B", uid="bob", client_id="c2")
    core.broadcast([K("t/x"), 1], 0, uids=["bob", "carol"])
    core.tick(30)
    assert sends(core.take_actions()) == [(("B",), "[[[:t/x 1]] nil]")]


def test_chsk_close_closes_every_connection_of_the_uid():
    core = make()
    open_ws(core, "A", client_id="t1")
    open_ws(core, "B", client_id="t2")
    core.send("alice", [K("chsk/close")], 0)
    assert [a for a in core.take_actions() if isinstance(a, Close)] == [Close("A", 1000), Close("B", 1000)]


# ---------------------------------------------------------------- keep-alive and disconnects


def test_an_idle_connection_is_pinged_after_half_the_kalive_then_closed():
    core = make(ws_kalive_ms=4000, ws_ping_timeout_ms=2000)
    open_ws(core, "A", now=0)
    core.tick(1999)
    assert core.take_actions() == []
    core.tick(2000)
    assert sends(core.take_actions()) == [(("A",), "[:chsk/ws-ping nil]")]
    core.tick(4000)
    assert core.take_actions() == [Close("A", 1000)]


def test_any_frame_counts_as_activity_and_defers_the_ping():
    core = make(ws_kalive_ms=4000, ws_ping_timeout_ms=2000)
    open_ws(core, "A", now=0)
    core.tick(2000)
    core.take_actions()
    core.ws_message("A", "[[:chsk/ws-pong] nil]", 2500)
    core.take_actions()
    core.tick(4000)
    assert core.take_actions() == []  # activity seen: wait another K
    core.tick(6000)
    assert sends(core.take_actions()) == [(("A",), "[:chsk/ws-ping nil]")]


def test_a_closed_uid_leaves_after_the_grace_period():
    core = make()
    open_ws(core, "A")
    core.ws_close("A", 100)
    assert core.is_connected("alice")
    core.tick(2599)
    assert events(core.take_actions()) == []
    core.tick(2600)
    assert [m.event for m in events(core.take_actions())] == [[K("chsk/uidport-close"), "alice"]]
    assert not core.is_connected("alice")


def test_reconnecting_within_the_grace_period_is_invisible_and_gets_what_was_pushed_meanwhile():
    core = make()
    open_ws(core, "A")
    core.ws_close("A", 100)
    core.send("alice", [K("t/p"), 1], 200)
    core.tick(230)
    assert sends(core.take_actions()) == []
    actions = open_ws(core, "A2", now=1000)
    assert sends(actions) == [(("A2",), '[[:chsk/handshake ["alice" nil nil]] nil]'), (("A2",), "[[[:t/p 1]] nil]")]
    assert events(actions) == []
    core.tick(10_000)
    assert events(core.take_actions()) == []


def test_a_stale_close_is_ignored():
    core = make()
    open_ws(core, "A")
    open_ws(core, "A2", now=10)  # same client-id reconnected before the old socket's close arrived
    core.ws_close("A", 20)
    core.tick(10_000)
    assert core.is_connected("alice")


def test_undelivered_pushes_are_dropped_after_the_ttl():
    core = make()
    open_ws(core, "A")
    core.ws_close("A", 0)
    core.send("alice", [K("t/p"), 1], 0, flush=True)
    core.tick(2000)
    core.take_actions()
    # grace expired at 2500 and the pending batch at 3100: a late reconnect is a new client
    core.tick(5000)
    actions = open_ws(core, "A2", now=5000)
    assert len(sends(actions)) == 1


# ---------------------------------------------------------------- Ajax


def test_ajax_handshake_is_answered_at_once_and_the_first_poll_opens_the_uidport():
    core = make()
    core.ajax_get("g1", request(**{"handshake?": "1"}), 0)
    actions = core.take_actions()
    assert responds(actions) == [("g1", 200, '[[:chsk/handshake ["alice" nil nil]] nil]')]
    assert events(actions) == [] and not core.is_connected("alice")
    core.ajax_get("g2", request(), 10)
    actions = core.take_actions()
    assert responds(actions) == []
    assert [m.event for m in events(actions)] == [[K("chsk/uidport-open"), "alice"]]
    assert core.ajax_uids == {"alice"} and core.any_uids == {"alice"}


def test_an_unknown_client_gets_a_handshake_even_without_the_param():
    core = make()
    core.ajax_get("g1", request(), 0)
    assert responds(core.take_actions())[0][2].startswith("[[:chsk/handshake")  # type: ignore[union-attr]


def test_a_held_poll_times_out_with_chsk_timeout():
    core = make(lp_timeout_ms=3000)
    core.ajax_get("g1", request(**{"handshake?": "1"}), 0)
    core.ajax_get("g2", request(), 0)
    core.take_actions()
    core.tick(2999)
    assert responds(core.take_actions()) == []
    core.tick(3000)
    assert responds(core.take_actions()) == [("g2", 200, "[:chsk/timeout nil]")]


def test_a_push_answers_the_held_poll_after_the_ajax_window():
    core = make()
    core.ajax_get("g1", request(**{"handshake?": "1"}), 0)
    core.ajax_get("g2", request(), 0)
    core.take_actions()
    core.send("alice", [K("t/p"), {K("n"): 1}], 0)
    core.tick(99)
    assert responds(core.take_actions()) == []
    core.tick(100)
    assert responds(core.take_actions()) == [("g2", 200, "[[[:t/p {:n 1}]] nil]")]


def test_a_push_between_polls_is_delivered_by_the_next_poll():
    core = make()
    core.ajax_get("g1", request(**{"handshake?": "1"}), 0)
    core.send("alice", [K("t/p"), 1], 0, flush=True)
    core.take_actions()
    core.ajax_get("g2", request(), 500)
    assert responds(core.take_actions()) == [("g2", 200, "[[[:t/p 1]] nil]")]


def test_an_ajax_client_that_stops_polling_leaves_after_its_grace_period():
    core = make(lp_timeout_ms=1000)
    core.ajax_get("g1", request(**{"handshake?": "1"}), 0)
    core.ajax_get("g2", request(), 0)
    core.take_actions()
    core.tick(1000)  # poll answered with a timeout; the client does not come back
    core.tick(5999)
    assert not [m for m in events(core.take_actions()) if m.id == K("chsk/uidport-close")]
    core.tick(6000)
    assert [m.event for m in events(core.take_actions())] == [[K("chsk/uidport-close"), "alice"]]


def test_a_post_without_cb_is_acknowledged_at_once():
    core = make()
    core.ajax_post("p1", post("[[:test/no-reply 1] nil]"), 0)
    actions = core.take_actions()
    assert responds(actions) == [("p1", 200, "[:chsk/dummy-cb-200 nil]")]
    (msg,) = events(actions)
    assert (msg.event, msg.reply, msg.transport) == ([K("test/no-reply"), 1], None, "ajax")


def test_a_post_with_cb_is_held_for_one_reply():
    core = make()
    core.ajax_post("p1", post("[[:test/echo {:a 2}] :ajax]"), 0)
    (msg,) = events(core.take_actions())
    assert msg.reply is not None
    assert msg.reply(msg.data) is True
    assert msg.reply("again") is False
    assert responds(core.take_actions()) == [("p1", 200, "[{:a 2} nil]")]
    core.tick(60_000)
    assert core.take_actions() == []


def test_the_legacy_zero_cb_marker_also_wants_a_reply():
    core = make()
    core.ajax_post("p1", post("[[:test/echo 2] 0]"), 0)
    (msg,) = events(core.take_actions())
    assert msg.reply is not None


def test_an_unanswered_post_times_out():
    core = make(lp_timeout_ms=3000)
    core.ajax_post("p1", post("[[:test/no-reply 1] :ajax]"), 0)
    core.take_actions()
    core.tick(3000)
    assert responds(core.take_actions()) == [("p1", 200, "[:chsk/timeout nil]")]


def test_an_unreadable_post_is_a_500_with_the_reason():
    core = make()
    core.ajax_post("p1", post("[[:test/echo 1"), 0)
    ((handle, status, body),) = responds(core.take_actions())
    assert (handle, status) == ("p1", 500) and body


def test_a_post_without_ppstr_is_a_bad_event_nil():
    core = make()
    core.ajax_post("p1", post(None), 0)
    actions = core.take_actions()
    assert responds(actions) == [("p1", 200, "[:chsk/dummy-cb-200 nil]")]
    assert [m.event for m in events(actions)] == [[K("chsk/bad-event"), None]]


def test_a_post_with_a_bad_csrf_token_is_refused():
    core = make()
    core.ajax_post("p1", post("[[:test/echo 1] :ajax]", token="nope"), 0)
    assert responds(core.take_actions()) == [("p1", 403, "Bad CSRF token")]


def test_a_post_without_client_id_is_dropped_and_its_reply_times_out():
    core = make(lp_timeout_ms=1000)
    core.ajax_post("p1", post("[[:test/echo 1] :ajax]", client_id=None), 0)
    assert core.take_actions() == []
    core.tick(1000)
    assert responds(core.take_actions()) == [("p1", 200, "[:chsk/timeout nil]")]


def test_config_refuses_a_long_poll_timeout_of_a_minute_or_more():
    with pytest.raises(ValueError):
        ServerConfig(lp_timeout_ms=60_000)
