"""The app the fuzzer attacks: ``sente.testapp`` (CSRF off: raw clients carry no session) plus
``[:fuzz/broadcast n]``, which broadcasts ``[:fuzz/seq n]`` to every connected client: the numbered stream the
healthy clients must receive whole while the fuzzer runs."""

from __future__ import annotations

from typing import Any

from sente import testapp
from sente.app import SenteApp
from sente.edn import Keyword
from sente.protocol.server import EventMsg

SEQ = Keyword("fuzz/seq")


def app(packer: str = "edn", **options: Any) -> SenteApp:
    sente_app = testapp.app(packer, csrf_token_fn=None, **options)
    chsk = sente_app.server

    @chsk.on("fuzz/broadcast")
    def broadcast(msg: EventMsg) -> None:
        chsk.broadcast([SEQ, msg.data])

    return sente_app
