"""Run a Sente app on uvicorn: HTTP (Ajax and the app's routes) and picows WebSockets on one port."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import uvicorn

from .app import SenteApp
from .transport.websocket import make_ws_protocol_class


def uvicorn_config(app: SenteApp, host: str = "127.0.0.1", port: int = 8090, log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings for ``app``: httptools for HTTP, our picows bridge in the ``ws`` slot."""
    ws_protocol = make_ws_protocol_class(
        lambda: app.server, max_message_size=app.server.config.max_ws_message_bytes
    )
    loop = "uvloop" if _has_uvloop() else "asyncio"
    return uvicorn.Config(
        app.asgi,
        host=host,
        port=port,
        ws=cast(Any, ws_protocol),  # uvicorn's annotation wants asyncio.Protocol; a BufferedProtocol works
        http="httptools",
        loop=loop,
        lifespan="on",
        log_level=log_level,
    )


def run(app: SenteApp, host: str = "127.0.0.1", port: int = 8090, log_level: str = "info") -> None:
    """Serve until interrupted."""
    server = uvicorn.Server(uvicorn_config(app, host, port, log_level))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
