"""The raw picows broadcast server: the practical ceiling for a Python WebSocket server.

Protocol (the load generator's ``picows`` dialect): on connect the server sends ``H`` (the "handshake"); a text
message ``P<event>`` from any client is sent as ``<event>`` to every connected client with one ``transport.send``
each: no batching, no encoding beyond picows's own framing. Nothing else is interpreted.

    python -m bench.peers.picows_server --port 8099
"""

from __future__ import annotations

import argparse
import asyncio

import picows


class Hub:
    """The connected clients' transports."""

    def __init__(self) -> None:
        self.clients: set[picows.WSTransport] = set()

    def broadcast(self, payload: bytes) -> None:
        text = picows.WSMsgType.TEXT
        for transport in self.clients:
            transport.send(text, payload)


class Listener(picows.WSListener):
    """One client: registered on connect, greeted with ``H``; its ``P...`` messages are broadcast."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: picows.WSTransport | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        self.hub.clients.add(transport)
        transport.send(picows.WSMsgType.TEXT, b"H")

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT:
            data = frame.get_payload_as_bytes()
            if data[:1] == b"P":
                self.hub.broadcast(data[1:])
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.hub.clients.discard(transport)


async def serve(host: str, port: int) -> None:
    hub = Hub()
    server = await picows.ws_create_server(lambda _req: Listener(hub), host, port, backlog=4096)
    print(f"READY picows {host}:{port}", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
