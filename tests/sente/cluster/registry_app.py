"""``sente.testapp`` as a supervised worker's app, for the supervisor tests: a stand-in for the ShmBackplane.

* The uids connected here are mirrored into the shared registry (``uid_connect``/``uid_disconnect``, key: the uid's
  UTF-8 bytes), so a test can see what ``reclaim_worker`` takes back when this worker dies.
* ``[:test/whoami nil]`` replies ``"worker=<i> pid=<pid> closed=<uid>,<uid>..."``: which worker holds the
  connection, and the uids of the ``uidport-close`` control messages its inbox received so far.
* Sente's CSRF check is off: sessions live in one worker, and a test's connections land on any worker.
"""

from __future__ import annotations

import os
from typing import Any

from csente.shm import KIND_CONTROL, WS
from sente import testapp
from sente.app import SenteApp
from sente.cluster.supervisor import UIDPORT_CLOSE
from sente.cluster.worker import current
from sente.protocol.server import EventMsg
from sente.server import ConnectedUids


def app(packer: str = "edn", **options: Any) -> SenteApp:
    ctx = current()
    assert ctx is not None, "run me with sente serve --workers N"
    shared = ctx.shared
    sente_app = testapp.app(packer, csrf_token_fn=None, **options)
    chsk = sente_app.server
    mirrored: set[Any] = set()
    closed: list[str] = []

    def mirror(uids: ConnectedUids) -> None:
        for uid in uids.any - mirrored:
            shared.uid_connect(str(uid).encode(), WS)
        for uid in mirrored - uids.any:
            shared.uid_disconnect(str(uid).encode(), WS)
        mirrored.clear()
        mirrored.update(uids.any)

    chsk.on_connected_uids_change(mirror)

    @chsk.on("test/whoami")
    def whoami(msg: EventMsg) -> None:
        for kind, key, payload in shared.drain():
            if kind == KIND_CONTROL and payload == UIDPORT_CLOSE:
                closed.append(key.decode())
        if msg.reply:
            msg.reply(f"worker={ctx.worker_index} pid={os.getpid()} closed={','.join(closed)}")

    return sente_app
