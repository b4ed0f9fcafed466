"""A Starlette chat on csente with Starlette's SessionMiddleware; Sente mounted at ``/`` after the app's routes.

    uvicorn examples.starlette_app:app --port 8000

``GET /login?uid=alice`` puts the uid in the session and answers the CSRF token; Sente (``HostSessions``) reads
both from that session. Everything no route of the app claims goes to ``chsk.asgi()``, which serves ``/chsk``.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from sente.protocol.server import EventMsg
from sente.server import ChannelSocketServer
from sente.sessions import HostSessions

chsk = ChannelSocketServer(sessions=HostSessions(), send_buf_ms_ws=0, send_buf_ms_ajax=0)


async def login(request: Request) -> JSONResponse:
    uid = request.query_params["uid"]
    request.session["uid"] = uid
    return JSONResponse({"uid": uid, "csrf_token": HostSessions.csrf_token(request.session)})


@chsk.on("chat/say")
def say(msg: EventMsg) -> None:
    chsk.broadcast(["chat/said", {"from": msg.uid, "text": msg.data["text"]}])


@chsk.on("chat/whoami")
def whoami(msg: EventMsg) -> None:
    if msg.reply is not None:
        msg.reply({"uid": msg.uid, "echo": msg.data})


app = Starlette(
    routes=[Route("/login", login), Mount("/", app=chsk.asgi())],
    middleware=[Middleware(SessionMiddleware, secret_key=os.environ.get("SESSION_SECRET", "dev-only: set it"))],
    lifespan=chsk.lifespan,
)
