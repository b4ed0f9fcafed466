"""The ops endpoints of one process: ``/healthz``, ``/readyz`` and ``/metrics``, as ASGI apps to mount anywhere.

:func:`health_routes` puts ``GET /healthz`` (200 while the process serves) and ``GET /readyz`` (200 once the server
is started and, in a worker, attached to shared memory; 503 while starting or draining) in front of an app. Both
bodies are JSON, ``{"status": ..., "worker": <index or null>, "pid": <pid>}``, with ``X-Sente-Worker``/
``X-Sente-Pid`` headers: how a test (or an operator) sees which worker answered. ``sente serve`` answers them on
its port (:mod:`sente.serve`).

Under another ASGI server (uvicorn, hypercorn, granian) mount ``chsk.ops_asgi()`` (:func:`ops_app`) in the app,
e.g. ``app.mount("/ops", chsk.ops_asgi())``: ``/ops/metrics`` is this process's Prometheus exposition,
``/ops/healthz`` 200 while it serves, ``/ops/readyz`` 200 once the Sente server has started (lifespan,
``chsk.lifespan`` or its first request), 503 before.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .metrics import AsgiApp, metrics_route
from .protocol.config import Response
from .transport.asgi import Receive, Scope, Send, route_path, send_response

if TYPE_CHECKING:
    from .server import ChannelSocketServer


@dataclass
class Health:
    """What ``/healthz`` and ``/readyz`` report for this process."""

    worker: int | None = None
    """The worker index; None when one process serves alone."""
    ready: bool = False
    """Started (and attached to shared memory in a worker)."""
    draining: bool = False

    @property
    def status(self) -> str:
        return "draining" if self.draining else "ready" if self.ready else "starting"


def health_routes(inner: AsgiApp, health: Health) -> AsgiApp:
    """``inner`` behind ``GET /healthz`` and ``GET /readyz`` (see the module docstring)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in ("/healthz", "/readyz"):
            await inner(scope, receive, send)
            return
        ok = path == "/healthz" or (health.ready and not health.draining)
        body = json.dumps({"status": health.status, "worker": health.worker, "pid": os.getpid()}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"x-sente-worker", b"-" if health.worker is None else str(health.worker).encode()),
            (b"x-sente-pid", str(os.getpid()).encode()),
        ]
        await send({"type": "http.response.start", "status": 200 if ok else 503, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})

    return app


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
