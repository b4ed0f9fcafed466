"""Per-message cost of the WebSocket bridge (picows in uvicorn's ws slot) against raw picows and ASGI.

Each server runs in its own process on 127.0.0.1; a picows client in this process keeps a window of
echo messages in flight until N have come back. Two numbers per run:

- server CPU per message: the server's process_time() delta over the run / N (what we pay per
  message, independent of the client's speed);
- wall per message: elapsed / N (throughput, client included).

The medians of the runs are printed. The bridge server also times ``send_frame`` (prebuilt frame,
raw transport write) against ``send_text`` (picows frames it) for a burst of writes.

    PYTHONPATH=python python3 bench/ws_bridge.py [--n 20000] [--runs 5] [--size 64] [--loop uvloop]

Servers: ``picows`` (ws_create_server, a Python WSListener that decodes text and sends it back,
like the bridge), ``bridge`` (uvicorn + sente.transport.websocket), ``asgi`` (uvicorn's own ASGI
WebSocket path with the ``websockets-sansio`` implementation; skipped if ``websockets`` is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from typing import Any

import picows

SERVERS = ("picows", "bridge", "asgi")


# --------------------------------------------------------------------------------------------
# Servers (run in a child process)


def _control(data: str) -> str | None:
    """Answers to the benchmark's control messages, shared by all servers."""
    if data == "!cpu":
        return f"!cpu {time.process_time():.9f}"
    return None


async def _serve_picows(port: int) -> None:
    class Echo(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type == picows.WSMsgType.TEXT:
                text = frame.get_payload_as_utf8_text()
                transport.send(picows.WSMsgType.TEXT, _control(text) or text)
            elif frame.msg_type == picows.WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    server = await picows.ws_create_server(lambda _req: Echo(), "127.0.0.1", port)
    print("READY", flush=True)
    await server.serve_forever()


async def _serve_uvicorn(port: int, ws: Any) -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                msg = await receive()
                if msg["type"] != "websocket.receive":
                    return
                text = msg["text"]
                await send({"type": "websocket.send", "text": _control(text) or text})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=ws, lifespan="off", http="httptools", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print("READY", flush=True)
    await task


def _bridge_class() -> type:
    from sente.transport.websocket import WsConnection, build_text_frame, make_ws_protocol_class

    class Echo:
        def ws_accept(self, request: Any) -> None:
            return None

        def ws_opened(self, conn: WsConnection) -> None:
            pass

        def ws_closed(self, conn: WsConnection, code: int | None) -> None:
            pass

        def ws_message(self, conn: WsConnection, data: str | bytes) -> None:
            if isinstance(data, str) and data.startswith("!fan"):
                _, n_s, size_s = data.split()
                n, text = int(n_s), "x" * int(size_s)
                frame = build_text_frame(text)
                t0 = time.perf_counter()
                for _ in range(n):
                    conn.send_frame(frame)
                t1 = time.perf_counter()
                for _ in range(n):
                    conn.send_text(text)
                t2 = time.perf_counter()
                conn.send_text(f"!fan {(t1 - t0) / n * 1e9:.0f} {(t2 - t1) / n * 1e9:.0f}")
            elif isinstance(data, str):
                conn.send_text(_control(data) or data)
            else:
                conn.send_bytes(data)

    echo = Echo()
    return make_ws_protocol_class(lambda: echo)


def serve(kind: str, port: int, loop: str) -> None:
    if kind == "picows":
        coro = _serve_picows(port)
    elif kind == "bridge":
        coro = _serve_uvicorn(port, _bridge_class())
    else:
        coro = _serve_uvicorn(port, "websockets-sansio")
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)


# --------------------------------------------------------------------------------------------
# Client


class _Client(picows.WSListener):
    def __init__(self) -> None:
        self.transport: picows.WSTransport | None = None
        self.remaining = 0
        self.received = 0
        self.target = 0
        self.payload = ""
        self.done: asyncio.Future[None] | None = None
        self.reply: asyncio.Future[str] | None = None
        self.drain_count = 0

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type != picows.WSMsgType.TEXT:
            return
        if self.done is not None:
            self.received += 1
            if self.remaining > 0:
                self.remaining -= 1
                transport.send(picows.WSMsgType.TEXT, self.payload)
            if self.received == self.target:
                self.done.set_result(None)
                self.done = None
        elif self.reply is not None:
            text = frame.get_payload_as_utf8_text()
            if text.startswith("!"):
                self.reply.set_result(text)
                self.reply = None

    async def request(self, text: str) -> str:
        assert self.transport is not None
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.send(picows.WSMsgType.TEXT, text)
        return await asyncio.wait_for(self.reply, 60)

    async def echo_run(self, n: int, window: int, payload: str) -> float:
        assert self.transport is not None
        self.payload, self.received, self.target = payload, 0, n
        self.remaining = n - window
        self.done = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        for _ in range(window):
            self.transport.send(picows.WSMsgType.TEXT, payload)
        await asyncio.wait_for(self.done, 120)
        return time.perf_counter() - t0


async def _measure(kind: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    _tr, client = await picows.ws_connect(_Client, f"ws://127.0.0.1:{port}/chsk")
    assert isinstance(client, _Client)
    payload = "x" * args.size
    await client.echo_run(min(args.n, 2000), args.window, payload)  # warm-up
    cpu, wall = [], []
    for _ in range(args.runs):
        c0 = float((await client.request("!cpu")).split()[1])
        elapsed = await client.echo_run(args.n, args.window, payload)
        c1 = float((await client.request("!cpu")).split()[1])
        cpu.append((c1 - c0) / args.n * 1e6)
        wall.append(elapsed / args.n * 1e6)
    result: dict[str, Any] = {"cpu_us": statistics.median(cpu), "wall_us": statistics.median(wall)}
    if kind == "bridge":
        fan = [(await client.request(f"!fan 2000 {args.size}")).split() for _ in range(args.runs)]
        result["send_frame_ns"] = statistics.median(float(f[1]) for f in fan)
        result["send_text_ns"] = statistics.median(float(f[2]) for f in fan)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20000, help="messages per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="text payload bytes")
    parser.add_argument("--window", type=int, default=64, help="messages in flight")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.loop)
        return

    import socket

    print(
        f"N={args.n} size={args.size} window={args.window} runs={args.runs} loop={args.loop} "
        f"picows={version('picows')}"
    )
    print(f"{'server':<8} {'server CPU us/msg':>18} {'wall us/msg':>12}")
    results: dict[str, dict[str, Any]] = {}
    for kind in args.servers.split(","):
        if kind == "asgi":
            try:
                import websockets  # noqa: F401
            except ImportError:
                print(f"{kind:<8} skipped (websockets not installed)")
                continue
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(port), "--loop", args.loop],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("READY"), line
            results[kind] = r = asyncio.run(_measure(kind, port, args))
            print(f"{kind:<8} {r['cpu_us']:>18.2f} {r['wall_us']:>12.2f}")
        finally:
            proc.terminate()
            proc.wait(10)
    if "picows" in results:
        base = results["picows"]["cpu_us"]
        for kind, r in results.items():
            print(f"{kind}: {r['cpu_us'] / base:.2f}x raw picows server CPU per message")
    if "bridge" in results:
        r = results["bridge"]
        print(
            f"bridge writes ({args.size}-byte text, 2000 in a burst): send_frame {r['send_frame_ns']:.0f} ns, "
            f"send_text {r['send_text_ns']:.0f} ns per write"
        )


if __name__ == "__main__":
    main()
