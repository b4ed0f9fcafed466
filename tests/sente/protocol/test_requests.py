"""A request's headers, query and cookies kept as its own text read exactly like the lists and dict they replace."""

from __future__ import annotations

from sente.protocol.requests import Cookies, HeadLines, QueryPairs, Request, parse_cookies

BLOCK = (b"Host: example.org\r\nX-Two:  a b \r\ncookie: a=1; b=\"q\"\r\nCookie: a=2; c=\r\nx-two: second\r\n"
         b"Broken")
PAIRS = [("host", "example.org"), ("x-two", "a b"), ("cookie", 'a=1; b="q"'), ("cookie", "a=2; c="),
         ("x-two", "second"), ("broken", "")]


def test_head_lines_are_lower_case_name_value_pairs_in_order() -> None:
    lines = HeadLines(BLOCK)
    assert list(lines) == PAIRS and lines == PAIRS and len(lines) == 6
    assert lines[1] == ("x-two", "a b") and list(lines[-2:]) == PAIRS[-2:]
    assert HeadLines(b"") == [] and len(HeadLines(b"")) == 0
    assert repr(lines) == repr(PAIRS)


def test_query_pairs_are_decoded_in_order_with_blanks() -> None:
    query = QueryPairs("client-id=c%2F1&flag&x=1&x=2&sp=a+b")
    assert query == [("client-id", "c/1"), ("flag", ""), ("x", "1"), ("x", "2"), ("sp", "a b")]
    assert query[0] == ("client-id", "c/1") and len(query) == 5
    assert QueryPairs("") == []


def test_cookies_first_occurrence_wins_and_quotes_go() -> None:
    cookies = Cookies(HeadLines(BLOCK))
    assert dict(cookies) == {"a": "1", "b": "q", "c": ""} == parse_cookies(PAIRS)
    assert cookies == {"a": "1", "b": "q", "c": ""}
    assert cookies["b"] == "q" and cookies.get("zz") is None and cookies.get("zz", "d") == "d" and len(cookies) == 3


def test_each_source_is_read_afresh_even_right_after_another() -> None:
    """Each view remembers only the last parse, by identity of its text: two requests never see each other's."""
    a, b = HeadLines(b"host: a"), HeadLines(b"host: b")
    assert [a[0], b[0], a[0]] == [("host", "a"), ("host", "b"), ("host", "a")]
    qa, qb = QueryPairs("u=1"), QueryPairs("u=2")
    assert [qa[0], qb[0], qa[0]] == [("u", "1"), ("u", "2"), ("u", "1")]
    ca, cb = Cookies(HeadLines(b"cookie: s=1")), Cookies(HeadLines(b"cookie: s=2"))
    assert [ca["s"], cb["s"], ca["s"]] == ["1", "2", "1"]


def test_a_request_reads_them_like_lists() -> None:
    headers = HeadLines(BLOCK)
    request = Request("GET", "/chsk", query=QueryPairs("client-id=c1&uid=u"), headers=headers, cookies=Cookies(headers))
    assert request.header("X-TWO") == "a b" and request.header("missing") is None
    assert request.param("uid") == "u" and request.client_id == "c1"
    assert request.cookies["a"] == "1"
