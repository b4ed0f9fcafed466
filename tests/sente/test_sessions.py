"""Session stores: in memory for one process, in a signed cookie for a broker's workers and a cluster's nodes."""

import time

import pytest

from sente.sessions import SECRET_ENV, SessionStore, SignedCookieSessions, default_store


def cookies(set_cookie: str) -> dict[str, str]:
    name, value = set_cookie.split(";", 1)[0].split("=", 1)
    return {name: value}


def test_a_memory_session_is_found_by_its_cookie_and_changes_in_place():
    store = SessionStore()
    session = store.new()
    session["uid"] = "alice"
    set_cookie = store.save(session)
    assert set_cookie is not None and "HttpOnly" in set_cookie
    loaded = store.load(cookies(set_cookie))
    assert loaded == {"uid": "alice"}
    assert loaded is not None and store.save(loaded) is None  # already stored: no new cookie
    assert store.load({"sente-session": "forged"}) is None


def test_the_memory_store_evicts_the_oldest_beyond_its_cap():
    store = SessionStore(max_sessions=2)
    first = store.save(store.new())
    store.save(store.new())
    store.save(store.new())
    assert first is not None and store.load(cookies(first)) is None


def test_any_process_with_the_secret_reads_a_signed_session():
    secret = "s" * 32
    session = SignedCookieSessions(secret).new()
    session["uid"] = "alice"
    token = SignedCookieSessions.csrf_token(session)
    set_cookie = SignedCookieSessions(secret).save(session)
    assert SignedCookieSessions(secret).load(cookies(set_cookie)) == {"uid": "alice", "csrf-token": token}


def test_a_tampered_or_foreign_signed_cookie_is_no_session():
    store = SignedCookieSessions("k" * 32)
    jar = cookies(store.save({"uid": "alice"}))
    body, sig = jar["sente-session"].rsplit(".", 1)
    assert store.load({"sente-session": body + "x." + sig}) is None
    assert SignedCookieSessions("other-secret-123456").load(jar) is None
    assert store.load({"sente-session": "garbage"}) is None


def test_a_signed_session_expires():
    store = SignedCookieSessions("k" * 32, max_age_s=1)
    jar = cookies(store.save({"uid": "alice"}))
    store.max_age_s = -1
    assert store.load(jar) is None
    store.max_age_s = time.time()
    assert store.load(jar) == {"uid": "alice"}


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError):
        SignedCookieSessions("short")


def test_the_default_store_signs_when_the_environment_has_a_secret(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert isinstance(default_store(), SessionStore)
    monkeypatch.setenv(SECRET_ENV, "x" * 32)
    assert isinstance(default_store("ring-session"), SignedCookieSessions)
