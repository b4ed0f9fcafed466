"""``sente.testapp`` on a node of a Redis-connected cluster (``sente serve --workers 2 --redis-url URL``).

* ``GET /uids``: this worker's view of the cluster's connected uids, as EDN (``connected_uids.any``).
* ``GET /broadcast?x=EDN``: ``broadcast([:test/broadcast x])`` to every connected uid of the cluster.
* ``GET /push?to=U&x=EDN`` (the reference app's): ``send(U, [:test/server-push x])``.
* ``GET /close?to=U``: ``send(U, [:chsk/close])``, Sente's way to close a uid's connections (every node's).
* ``[:test/worker nil]`` replies this worker's index (which worker of its node holds a connection).
* Every ``:chsk/uidport-open``/``close`` its handlers see is appended as ``open <uid>``/``close <uid>`` to the
  file named by ``REDIS_APP_LOG`` (one line, one ``O_APPEND`` write), so a test counts them over every worker
  of every node.
* Sente's CSRF check is off: a test's raw connections carry no session.
"""

from __future__ import annotations

import os
from typing import Any

from sente import edn, testapp
from sente.app import SenteApp
from sente.cluster.worker import current
from sente.protocol.server import EventMsg
from sente.transport.asgi import Receive, Scope, Send, request_from_scope, send_response

TEXT = (("Content-Type", "text/plain; charset=utf-8"),)


def app(packer: str = "edn", **options: Any) -> SenteApp:
    from sente.protocol.config import Response

    inner = testapp.app(packer, csrf_token_fn=None, **options)
    chsk = inner.server
    log_path = os.environ.get("REDIS_APP_LOG")

    def record(kind: str, uid: Any) -> None:
        if log_path:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{kind} {uid}\n".encode())
            finally:
                os.close(fd)

    @chsk.on("chsk/uidport-open")
    def opened(msg: EventMsg) -> None:
        record("open", msg.data)

    @chsk.on("chsk/uidport-close")
    def closed(msg: EventMsg) -> None:
        record("close", msg.data)

    @chsk.on("test/worker")
    def worker(msg: EventMsg) -> None:
        ctx = current()
        if msg.reply:
            msg.reply(ctx.worker_index if ctx is not None else -1)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/uids":
            await send_response(send, Response(200, edn.dumps(set(chsk.connected_uids.any)), TEXT))
        elif scope["type"] == "http" and scope["path"] == "/broadcast":
            x = edn.loads(request_from_scope(scope).param("x") or "nil")
            chsk.broadcast([edn.Keyword("test/broadcast"), x])
            await send_response(send, Response(200, "ok", TEXT))
        elif scope["type"] == "http" and scope["path"] == "/close":
            chsk.send(request_from_scope(scope).param("to"), [edn.Keyword("chsk/close")])
            await send_response(send, Response(200, "ok", TEXT))
        else:
            await inner.asgi(scope, receive, send)

    return SenteApp(chsk, asgi)
