"""The csente app the fan-out benchmark serves with ``sente serve bench.peers.sente_app:app``.

Every client's uid is its ``uid`` query parameter (one uid per client, as in a real app); CSRF is off (the load
generator has no session). A ``[:bench/pub data]`` event from the publisher is broadcast as ``[:bench/f data]`` to
every connected uid with :meth:`~sente.server.ChannelSocketServer.broadcast` (encoded once, batched per flush).
Under ``--workers N`` the worker's backplane carries the broadcast to the other workers' clients.
"""

from __future__ import annotations

from typing import Any

from sente.app import SenteApp
from sente.edn import Keyword
from sente.protocol.server import EventMsg
from sente.server import ChannelSocketServer

F = Keyword("bench/f")


def app(packer: str = "edn", **options: Any) -> SenteApp:
    options.setdefault("csrf_token_fn", None)
    chsk = ChannelSocketServer(packer=packer, user_id_fn=lambda req: req.param("uid"), **options)

    @chsk.on("bench/pub")
    def pub(msg: EventMsg) -> None:
        chsk.broadcast([F, msg.data])

    return SenteApp(chsk, chsk.asgi())
