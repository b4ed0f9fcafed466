"""The demo that ``sente demo`` runs: a live chat page on sente.js, showing what a channel socket does.

Open http://127.0.0.1:8090/ in two tabs (or ``/?user=bob``): each tab shows its connection state and
transport, who is connected (``on_connected_uids_change``), a chat broadcast to everyone with the messages/s
it receives, and a button that asks the server for a reply. ``/?type=ajax`` forces Ajax long-polling; with
WebSocket blocked, ``type=auto`` (the default) falls back to it by itself.

Routes: ``/`` the page (``sente/static/demo.html``), ``/sente.js`` the client, ``/csrf-token`` the session's
CSRF token (:meth:`ChannelSocketServer.asgi`), ``/login?user=U`` puts the user name in the session (answers the
name), ``/chsk`` Sente. The uid is the session's, Sente's default ``user-id-fn`` (Ajax POSTs carry no params in
Sente 1.21+, so a uid from a query parameter would not reach them).
Events: ``[:demo/chat {:text s}]`` → ``[:demo/said {:from uid :text s :at ms}]`` to every connected uid;
``[:demo/ask x]`` → reply ``{:answer .. :uid .. :pid ..}``; ``[:demo/users]`` → reply the connected uids;
``[:demo/users [uid ...]]`` is pushed to everyone when that set changes.
Run it like any app: ``sente demo`` is ``sente serve sente.demo:app --workers 2``.
"""

from __future__ import annotations

import asyncio
import html
import os
import time
from secrets import randbelow
from typing import Any

from .app import SenteApp
from .jsclient import static_file, with_sente_js
from .protocol.config import Response
from .protocol.server import EventMsg
from .server import ChannelSocketServer, ConnectedUids
from .transport.asgi import Receive, Scope, Send, request_from_scope, send_response

MAX_TEXT = 500
MAX_USER = 32


def _users(uids: ConnectedUids) -> list[str]:
    return sorted(str(u) for u in uids.any if isinstance(u, str))


def page(packer: str) -> str:
    """The demo page, told which packer the server speaks (nothing on the wire says it)."""
    return static_file("demo.html").replace("{{PACKER}}", html.escape(packer))


def app(packer: str = "edn", **options: Any) -> SenteApp:
    """Build the demo; ``options`` go to :class:`~sente.server.ChannelSocketServer` (``sente serve`` flags)."""
    chsk = ChannelSocketServer(packer=packer, **options)  # uid: the session's "uid"

    @chsk.on("demo/chat")
    def chat(msg: EventMsg) -> None:
        text = msg.data.get("text") if isinstance(msg.data, dict) else None
        if isinstance(text, str) and text.strip():
            chsk.broadcast(["demo/said", {"from": msg.uid, "text": text[:MAX_TEXT], "at": int(time.time() * 1000)}])

    @chsk.on("demo/ask")
    def ask(msg: EventMsg) -> None:
        if msg.reply:
            msg.reply({"answer": f"hello {msg.uid}, this is worker {os.getpid()}", "uid": msg.uid,
                       "pid": os.getpid(), "at": int(time.time() * 1000)})

    @chsk.on("demo/users")
    def users(msg: EventMsg) -> None:
        if msg.reply:
            msg.reply(_users(chsk.connected_uids))

    def users_changed(uids: ConnectedUids) -> None:
        asyncio.get_running_loop().call_soon(chsk.broadcast, ["demo/users", _users(uids)])

    chsk.on_connected_uids_change(users_changed)
    body = page(packer)

    async def login(scope: Scope, send: Send) -> None:
        request = request_from_scope(scope)
        session, new = chsk.sessions.get_or_create(request.cookies)
        asked = (request.param("user") or "").strip()[:MAX_USER]
        user = asked or session.get("uid") or f"guest-{randbelow(9000) + 1000}"
        changed = new or session.get("uid") != user
        session["uid"] = user
        cookie = chsk.sessions.save(session) if changed else None
        headers = [("Cache-Control", "no-store")] + ([("Set-Cookie", cookie)] if cookie else [])
        await send_response(send, Response(200, user, (("Content-Type", "text/plain; charset=utf-8"),)), headers)

    async def routes(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http" and scope["path"] in ("/", "/index.html"):
            await send_response(send, Response(200, body, (("Content-Type", "text/html; charset=utf-8"),)),
                                [("Cache-Control", "no-cache")])
        elif scope["type"] == "http" and scope["path"] == "/login":
            await login(scope, send)
        elif scope["type"] == "http":
            await send_response(send, Response(404, "Not Found", (("Content-Type", "text/plain; charset=utf-8"),)))

    return SenteApp(chsk, chsk.asgi(with_sente_js(routes), csrf_token_path="/csrf-token"))
