"""A chat on csente with no framework: one ASGI app, csente's own sessions.

    uvicorn examples.plain_asgi:app --port 8000

``GET /login?uid=alice`` stores the uid in csente's session (a signed cookie when ``SENTE_SESSION_SECRET`` is
set, else this process's memory) and answers the CSRF token; ``chsk.asgi(site)`` serves ``/chsk`` and hands
every other request to ``site``.

Several worker processes without ``sente serve`` (``uvicorn --workers 4``, gunicorn): give every worker the same
``SENTE_SESSION_SECRET`` (sessions become signed cookies any worker reads) and a Redis (``SENTE_REDIS_URL``: the
workers join as nodes of one cluster, so pushes and connected uids span them)::

    SENTE_SESSION_SECRET=$(openssl rand -hex 32) SENTE_REDIS_URL=redis://127.0.0.1:6379/0 \
        uvicorn examples.plain_asgi:app --workers 4
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from sente.protocol.config import Response
from sente.protocol.server import EventMsg
from sente.server import ChannelSocketServer
from sente.transport.asgi import Receive, Scope, Send, parse_cookies, route_path, send_response

chsk = ChannelSocketServer(send_buf_ms_ws=0, send_buf_ms_ajax=0, redis_url=os.environ.get("SENTE_REDIS_URL") or None)


async def site(scope: Scope, receive: Receive, send: Send) -> None:
    """The app's own routes: ``/login?uid=...``; 404 for the rest."""
    if scope["type"] != "http":
        return
    if route_path(scope) != "/login":
        await send_response(send, Response(404, "Not Found"))
        return
    uid = parse_qs(scope["query_string"].decode()).get("uid", [""])[0]
    cookies = parse_cookies(dict(scope["headers"]).get(b"cookie", b"").decode("latin-1"))
    session, _ = chsk.sessions.get_or_create(cookies)
    session["uid"] = uid
    token = chsk.sessions.csrf_token(session)
    set_cookie = chsk.sessions.save(session)  # the cookie carries (or names) the changed session
    headers = [("Set-Cookie", set_cookie)] if set_cookie else []
    await send_response(send, Response(200, token, (("Content-Type", "text/plain"),)), headers)


@chsk.on("chat/say")
def say(msg: EventMsg) -> None:
    chsk.broadcast(["chat/said", {"from": msg.uid, "text": msg.data["text"]}])


@chsk.on("chat/whoami")
def whoami(msg: EventMsg) -> None:
    if msg.reply is not None:
        msg.reply({"uid": msg.uid, "echo": msg.data})


app = chsk.asgi(site)
