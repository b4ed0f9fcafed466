"""The reference test app of ../shared/vectors/wire/README.md, so the same checks run against real Sente and us.

Routes: ``GET /csrf-token[?uid=U]`` (session cookie and CSRF token, optionally storing the uid),
``GET|POST /chsk`` (Sente), ``GET /push?to=U&x=EDN`` (server push ``[:test/server-push x]``).
The uid is the ``uid`` param, else the session's; handshake data is ``{:hsdata p}`` for an ``hsdata`` param.
Run it: ``sente serve sente.testapp:app --port 18100 [--packer transit]``.

The reference rig sits behind ring-defaults' ``site-defaults``; what of that middleware shows on the wire
is emulated here, so the same transcripts hold for both servers:

* ring-session: the session cookie is ``ring-session``; a request without a live session gets a new
  one (holding a fresh anti-forgery token) and a ``Set-Cookie`` on every response that goes back through
  the middleware: the rig helpers' responses and Sente's refusals (403), but not Sente's Ajax 200s
  (http-kit async responses) nor 500s (exceptions answered by http-kit itself).
* ring-anti-forgery: a POST (any path) whose ``X-CSRF-Token``/``X-XSRF-Token`` header does not match
  the session's token is refused with ``403 <h1>Invalid anti-forgery token</h1>`` before Sente sees it
  (the ``__anti-forgery-token`` form field is not read).
* ring's content-type middleware: Sente's own 403 ``Bad CSRF token`` has no content type, so it goes out
  as ``application/octet-stream``.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from . import edn
from .app import SenteApp
from .edn import Keyword
from .protocol.config import Response
from .protocol.requests import Request
from .protocol.server import EventMsg
from .server import ChannelSocketServer
from .sessions import Sessions, default_store
from .transport.asgi import Message, Receive, Scope, Send, request_from_scope, send_response
from .transport.websocket import HttpResponse, UpgradeRequest

K = Keyword
TEXT = (("Content-Type", "text/plain; charset=utf-8"),)
BAD_CSRF = Response(403, "Bad CSRF token", (("Content-Type", "application/octet-stream"),))
"""Sente's 403 as ring's content-type middleware lets it out."""
ANTI_FORGERY_REFUSAL = Response(
    403, "<h1>Invalid anti-forgery token</h1>", (("Content-Type", "text/html; charset=utf-8"),)
)
"""ring-anti-forgery's default error response."""
SESSION_COOKIE = "ring-session"


class _RigServer(ChannelSocketServer):
    """The channel socket with ring's session middleware around its WebSocket refusals."""

    def ws_accept(self, request: UpgradeRequest) -> HttpResponse | None:
        refused = super().ws_accept(request)
        if refused is not None and refused.status != 500 and self.sessions.load(request.cookies) is None:
            session = self.sessions.new()
            self.sessions.csrf_token(session)
            set_cookie = self.sessions.save(session)
            if set_cookie:
                refused.headers.append(("Set-Cookie", set_cookie))
        return refused


def _anti_forgery_ok(sessions: Sessions, request: Request) -> bool:
    session = sessions.load(request.cookies)
    token = session.get("csrf-token") if session is not None else None
    presented = request.header("x-csrf-token") or request.header("x-xsrf-token")
    return token is not None and presented is not None and hmac.compare_digest(str(token).encode(), presented.encode())


def _uid(request: Request) -> Any:
    return request.param("uid") or request.session.get("uid")


def _handshake_data(request: Request) -> Any:
    hsdata = request.param("hsdata")
    return None if hsdata is None else {K("hsdata"): hsdata}


def app(packer: str = "edn", **options: Any) -> SenteApp:
    """Build the reference app; ``options`` go to :class:`~sente.server.ChannelSocketServer`."""
    options.setdefault("bad_csrf_response", BAD_CSRF)
    options.setdefault("sessions", default_store(SESSION_COOKIE))
    # Sente's data model exactly (keyword keys stay Keywords): the rig echoes maps with mixed key types.
    chsk = _RigServer(packer=packer, str_keys=False, user_id_fn=_uid, handshake_data_fn=_handshake_data, **options)
    _register_handlers(chsk)
    sente_app = chsk.asgi()

    async def routes(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await sente_app(scope, receive, send)
            return
        request = request_from_scope(scope)
        session, new = chsk.sessions.get_or_create(request.cookies)
        if new:
            chsk.sessions.csrf_token(session)  # ring-anti-forgery puts a token in every new session
        if scope["path"] == "/csrf-token" and request.param("uid") is not None:
            new = new or session.get("uid") != request.param("uid")
            session["uid"] = request.param("uid")
        cookie = chsk.sessions.save(session) if new else None
        set_cookie = [("Set-Cookie", cookie)] if cookie else []
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and not _anti_forgery_ok(chsk.sessions, request):
            await send_response(send, ANTI_FORGERY_REFUSAL, set_cookie)
        elif scope["path"] == chsk.path:
            await sente_app(scope, receive, _with_cookie(send, set_cookie))
        elif scope["path"] == "/csrf-token":
            token = chsk.sessions.csrf_token(session)
            await send_response(send, Response(200, token, TEXT), set_cookie)
        elif scope["path"] == "/push":
            to, x = request.param("to"), request.param("x")
            try:
                value = edn.loads(x or "")
            except ValueError as e:
                await send_response(send, Response(400, str(e), TEXT), set_cookie)
                return
            chsk.send(to, [K("test/server-push"), value])
            await send_response(send, Response(200, "ok", TEXT), set_cookie)
        else:
            await send_response(send, Response(404, "Not Found", TEXT), set_cookie)

    return SenteApp(chsk, routes)


def _with_cookie(send: Send, set_cookie: list[tuple[str, str]]) -> Send:
    """Add ring-session's cookie to Sente's synchronous refusals (not its Ajax 200s, nor 500s)."""
    if not set_cookie:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] not in (200, 500):
            headers = list(message.get("headers", []))
            headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in set_cookie]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _register_handlers(chsk: ChannelSocketServer) -> None:
    @chsk.on("test/echo")
    def echo(msg: EventMsg) -> None:
        if msg.reply:
            msg.reply(msg.data)

    @chsk.on("test/push-me")
    def push_me(msg: EventMsg) -> None:
        chsk.send(msg.uid, [K("test/pushed"), msg.data])

    @chsk.on("test/push-many")
    def push_many(msg: EventMsg) -> None:
        n, x = msg.data
        for i in range(n):
            chsk.send(msg.uid, [K("test/pushed"), [i, x]])

    @chsk.on("test/push-flush")
    def push_flush(msg: EventMsg) -> None:
        chsk.send(msg.uid, [K("test/pushed"), msg.data], flush=True)

    @chsk.on("test/broadcast-all")
    def broadcast_all(msg: EventMsg) -> None:
        chsk.broadcast([K("test/broadcast"), msg.data], chsk.connected_uids.any)

    @chsk.on("test/reply-later")
    def reply_later(msg: EventMsg) -> None:
        ms, x = msg.data
        if msg.reply:
            asyncio.get_running_loop().call_later(ms / 1000, msg.reply, x)

    @chsk.on("test/no-reply")
    def no_reply(msg: EventMsg) -> None:
        pass

    @chsk.on("test/close-me")
    def close_me(msg: EventMsg) -> None:
        chsk.send(msg.uid, [K("chsk/close")])

    @chsk.on_default
    def unhandled(msg: EventMsg) -> None:
        if msg.reply and msg.id.ns != "chsk":
            msg.reply([K("rig/unhandled-event"), msg.id])
