"""The reference test app of ../shared/vectors/wire/README.md, so the same checks run against real Sente and us.

Routes: ``GET /csrf-token[?uid=U]`` (session cookie and CSRF token, optionally storing the uid),
``GET|POST /chsk`` (Sente), ``GET /push?to=U&x=EDN`` (server push ``[:test/server-push x]``).
The uid is the ``uid`` param, else the session's; handshake data is ``{:hsdata p}`` for an ``hsdata`` param.
Run it: ``sente serve sente.testapp:app --port 18100 [--packer transit]``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import edn
from .app import SenteApp
from .edn import Keyword
from .protocol.config import Response
from .protocol.requests import Request
from .protocol.server import EventMsg
from .server import ChannelSocketServer
from .transport.asgi import Receive, Scope, Send, request_from_scope, send_response

K = Keyword
TEXT = (("Content-Type", "text/plain; charset=utf-8"),)


def _uid(request: Request) -> Any:
    return request.param("uid") or request.session.get("uid")


def _handshake_data(request: Request) -> Any:
    hsdata = request.param("hsdata")
    return None if hsdata is None else {K("hsdata"): hsdata}


def app(packer: str = "edn", **options: Any) -> SenteApp:
    """Build the reference app; ``options`` go to :class:`~sente.server.ChannelSocketServer`."""
    chsk = ChannelSocketServer(packer=packer, user_id_fn=_uid, handshake_data_fn=_handshake_data, **options)
    _register_handlers(chsk)

    async def routes(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(chsk, receive, send)
            return
        if scope["type"] != "http":
            return
        request = request_from_scope(scope)
        if scope["path"] == "/csrf-token":
            session, set_cookie = chsk.sessions.get_or_create(request.cookies)
            uid = request.param("uid")
            if uid is not None:
                session["uid"] = uid
            token = chsk.sessions.csrf_token(session)
            await send_response(send, Response(200, token, TEXT), [("Set-Cookie", set_cookie)] if set_cookie else [])
        elif scope["path"] == "/push":
            to, x = request.param("to"), request.param("x")
            try:
                value = edn.loads(x or "")
            except ValueError as e:
                await send_response(send, Response(400, str(e), TEXT))
                return
            chsk.send(to, [K("test/server-push"), value])
            await send_response(send, Response(200, "ok", TEXT))
        else:
            await send_response(send, Response(404, "Not Found", TEXT))

    return SenteApp(chsk, chsk.asgi(routes))


async def _lifespan(chsk: ChannelSocketServer, receive: Receive, send: Send) -> None:
    stop = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            stop = chsk.start_router()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if stop is not None:
                stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


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
