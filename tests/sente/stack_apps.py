"""Apps for ``sente serve`` in the stack tests: Sente mounted inside FastAPI the way users write it."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

from sente.app import SenteApp
from sente.protocol.server import EventMsg
from sente.server import ChannelSocketServer


def fastapi_mounted(packer: str = "edn", **options: Any) -> SenteApp:
    """FastAPI with ``app.mount("/", chsk.asgi())`` and no ``chsk.lifespan``: the lifespan never reaches Sente, so
    only ``sente serve`` can start its router and its backplane to the other workers. The uid is the ``uid`` param;
    no CSRF check (a test app)."""
    chsk = ChannelSocketServer(packer=packer, user_id_fn=lambda request: request.param("uid"), csrf_token_fn=None,
                               **options)

    @chsk.on("test/whoami")
    def whoami(msg: EventMsg) -> None:
        if msg.reply is not None:
            msg.reply({"uid": msg.uid, "pid": os.getpid()})

    @chsk.on("test/shout")
    def shout(msg: EventMsg) -> None:
        chsk.broadcast(["test/shouted", msg.data])

    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.mount("/", chsk.asgi())
    return SenteApp(chsk, app)
