"""python-socketio on uvicorn: the Python default for realtime fan-out, as the benchmark's peer.

A client's ``pub`` event is re-emitted as ``f`` to every connected client (``sio.emit("f", data)``: the
library's broadcast, one encode and one send per client). The load generator speaks Engine.IO v4 / Socket.IO v5
framing over a raw WebSocket (``/socket.io/?EIO=4&transport=websocket``), so no polling phase is involved.

    python -m bench.peers.socketio_app --port 8098
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn


def make_app() -> Any:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False)

    async def pub(sid: str, data: Any) -> None:
        await sio.emit("f", data)

    sio.on("pub", pub)
    return socketio.ASGIApp(sio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    args = parser.parse_args()
    print(f"READY socketio {args.host}:{args.port}", flush=True)  # the runner still waits for the port to accept
    uvicorn.run(make_app(), host=args.host, port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
