"""``sente.testapp`` as a supervised worker's app, with ``X-Sente-Worker: <index>`` on every HTTP response.

Everything else is the reference app unchanged (sessions, CSRF, ``/push``): the header only shows a test which
worker answered each Ajax request, so it can check that one client's requests really reached both workers.
"""

from __future__ import annotations

from typing import Any

from sente import testapp
from sente.app import SenteApp
from sente.cluster.worker import current
from sente.transport.asgi import Message, Receive, Scope, Send


def app(packer: str = "edn", **options: Any) -> SenteApp:
    ctx = current()
    assert ctx is not None, "run me with sente serve --workers N"
    worker = str(ctx.worker_index).encode()
    inner = testapp.app(packer, **options)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await inner.asgi(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-sente-worker", worker)]}
            await send(message)

        await inner.asgi(scope, receive, tagged)

    return SenteApp(inner.server, asgi)
