"""A FastAPI chat on csente: a login route sets the uid in the session, chat broadcast, request/reply, a sync
route pushing to one user.

    uvicorn examples.fastapi_app:app --port 8000        # or: hypercorn / granian --interface asgi

The uid and the CSRF token live in the app's own session (Starlette's SessionMiddleware): ``HostSessions``
makes that session Sente's, so the default ``user_id_fn`` (``session["uid"]``) and CSRF check read it. A client
(a page, or ``sente.client``) calls ``POST /login?uid=alice``, keeps the session cookie, and connects to
``/chsk`` with the token the login returned.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware

from sente.protocol.server import EventMsg
from sente.server import ChannelSocketServer
from sente.sessions import HostSessions

chsk = ChannelSocketServer(sessions=HostSessions(), send_buf_ms_ws=0, send_buf_ms_ajax=0)

app = FastAPI(lifespan=chsk.lifespan)  # starts Sente's router with the app (else: with its first request)
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("SESSION_SECRET", "dev-only: set SESSION_SECRET"))
chsk.mount(app)  # Sente at /chsk, WebSocket and Ajax, inside the session middleware


@app.post("/login")
async def login(request: Request, uid: str) -> dict[str, str]:
    """Sign in as ``uid`` (a real app checks a password here); answers the CSRF token Sente will ask for."""
    request.session["uid"] = uid
    return {"uid": uid, "csrf_token": HostSessions.csrf_token(request.session)}


@app.post("/notify/{uid}")
def notify(uid: str, text: str) -> dict[str, Any]:
    """A plain ``def`` route: FastAPI runs it in a thread, and ``chsk.send`` hands the push to the event loop."""
    return {"delivered": chsk.send(uid, ["chat/notice", {"text": text}]), "online": len(chsk.connected_uids.any)}


@chsk.on("chat/say")
def say(msg: EventMsg) -> None:
    """Broadcast to everyone connected."""
    chsk.broadcast(["chat/said", {"from": msg.uid, "text": msg.data["text"]}])


@chsk.on("chat/whoami")
def whoami(msg: EventMsg) -> None:
    """Request/reply: the client's ``request(...)`` gets this answer."""
    if msg.reply is not None:
        msg.reply({"uid": msg.uid, "echo": msg.data})
