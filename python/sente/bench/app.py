"""The csente app the fan-out benchmark serves with ``sente serve sente.bench.app:app``.

Every client's uid is its ``uid`` query parameter (one uid per client, as in a real app); CSRF is off (the load
generator has no session). A ``[:bench/pub data]`` event from the publisher is broadcast as ``[:bench/f data]`` to
every connected uid with :meth:`~sente.server.ChannelSocketServer.broadcast` (encoded once, batched per flush).
Under ``--workers N`` the worker's backplane carries the broadcast to the other workers' clients.

One process (the benchmark's ``csente`` and ``csente-30ms`` peers), independent of ``sente serve``'s defaults:

    python -m sente.bench.app --port 8097 --send-buf-ms-ws 0
"""

from __future__ import annotations

import argparse
from typing import Any

from ..app import SenteApp
from ..edn import Keyword
from ..packers import PACKER_NAMES
from ..protocol.server import EventMsg
from ..serve import run
from ..server import ChannelSocketServer

F = Keyword("bench/f")
PUSHES = ("all", "uids", "send")
"""How a published event reaches every client: ``broadcast(event)``; ``broadcast(event, connected_uids.any)`` (a
uid list, as Sente apps push); a ``send(uid, event)`` per connected uid (Sente's ``(doseq [uid ...] (chsk-send!
uid ev))``)."""


def app(packer: str = "edn", push: str = "all", **options: Any) -> SenteApp:
    if push not in PUSHES:
        raise ValueError(f"push must be one of {PUSHES}, got {push!r}")
    options.setdefault("csrf_token_fn", None)
    chsk = ChannelSocketServer(packer=packer, user_id_fn=lambda req: req.param("uid"), **options)

    @chsk.on("bench/pub")
    def pub(msg: EventMsg) -> None:
        event = [F, msg.data]
        if push == "all":
            chsk.broadcast(event)
        elif push == "uids":
            chsk.broadcast(event, chsk.connected_uids.any)
        else:
            for uid in chsk.connected_uids.any:
                chsk.send(uid, event)

    return SenteApp(chsk, chsk.asgi())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--send-buf-ms-ws", type=int, default=0, help="0: adaptive flush; Sente's default is 30")
    parser.add_argument("--packer", choices=PACKER_NAMES, default="edn", help="wire format (default: %(default)s)")
    parser.add_argument("--push", choices=PUSHES, default="all", help="how an event reaches every client: "
                        "broadcast(event), broadcast(event, connected_uids.any), or send(uid, event) per uid")
    args = parser.parse_args()
    print(f"READY csente {args.host}:{args.port}", flush=True)  # the runner still waits for the port to accept
    run(app(args.packer, push=args.push, send_buf_ms_ws=args.send_buf_ms_ws), args.host, args.port,
        log_level="warning")


if __name__ == "__main__":
    main()
