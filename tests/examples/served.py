"""The examples as the tests serve them: each at ``/`` and, through Starlette's own ``Mount``, at ``/sub``.

One process serves both: paths under ``/sub/`` go through ``Mount("/sub", app=example)`` (so the example sees
``root_path="/sub"`` as it would mounted in a bigger app), everything else (the lifespan too) to the example.
"""

from __future__ import annotations

from starlette.routing import Mount, Router

from examples import fastapi_app as _fastapi
from examples import plain_asgi as _plain
from examples import starlette_app as _starlette
from sente.server import AsgiApp
from sente.transport.asgi import Receive, Scope, Send

SUB = "/sub"


def served(example: AsgiApp) -> AsgiApp:
    mounted = Router(routes=[Mount(SUB, app=example)])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(SUB + "/"):
            await mounted(scope, receive, send)
        else:
            await example(scope, receive, send)

    return app


fastapi_app = served(_fastapi.app)
starlette_app = served(_starlette.app)
plain_asgi = served(_plain.app)
