"""``sente.testapp`` as a supervised worker's app, for the supervisor tests.

The worker joins the app's server to the broker (the shared-memory backplane), so presence lives in the shared
registry (keys: the uids' EDN) and the ``uidport-close`` of a reclaimed worker's uids reaches a live worker.

* ``[:test/whoami nil]`` replies ``"worker=<i> pid=<pid> closed=<uid>,<uid>..."``: which worker holds the
  connection, and the uids whose ``:chsk/uidport-close`` its handlers saw so far.
* Sente's CSRF check is off: a test's raw connections carry no session.
"""

from __future__ import annotations

import os
from typing import Any

from sente import testapp
from sente.app import SenteApp
from sente.cluster.worker import current
from sente.protocol.server import EventMsg


def app(packer: str = "edn", **options: Any) -> SenteApp:
    ctx = current()
    assert ctx is not None, "run me with sente serve --workers N"
    sente_app = testapp.app(packer, csrf_token_fn=None, **options)
    chsk = sente_app.server
    closed: list[str] = []

    @chsk.on("chsk/uidport-close")
    def on_close(msg: EventMsg) -> None:
        closed.append(str(msg.data))

    @chsk.on("test/whoami")
    def whoami(msg: EventMsg) -> None:
        if msg.reply:
            msg.reply(f"worker={ctx.worker_index} pid={os.getpid()} closed={','.join(closed)}")

    return sente_app
