"""``/metrics``, ``/healthz`` and ``/readyz`` for one process, as an ASGI app to mount anywhere.

``sente serve`` answers these on its port; under another ASGI server (uvicorn, hypercorn, granian) mount
``chsk.ops_asgi()`` in the app, e.g. ``app.mount("/ops", chsk.ops_asgi())``: ``/ops/metrics`` is this process's
Prometheus exposition, ``/ops/healthz`` 200 while it serves, ``/ops/readyz`` 200 once the Sente server has
started (lifespan, ``chsk.lifespan`` or its first request), 503 before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .metrics import metrics_route
from .protocol.config import Response
from .serve import Health, health_routes
from .transport.asgi import Receive, Scope, Send, route_path, send_response

if TYPE_CHECKING:
    from .server import AsgiApp, ChannelSocketServer


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send_response(send, Response(404, "Not Found"))


def ops_app(server: ChannelSocketServer) -> AsgiApp:
    """The ops endpoints of ``server``'s process, at ``/metrics``, ``/healthz``, ``/readyz`` where mounted."""
    health = Health()
    routes = health_routes(metrics_route(_not_found), health)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return  # nothing to start; a mount never gets it, an app of its own answers nothing
        health.ready = server.started
        await routes({**scope, "path": route_path(scope), "root_path": ""}, receive, send)

    return app
