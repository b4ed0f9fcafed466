"""Our server on 127.0.0.1 for the client tests: the reference test app, fast timeouts, a fixed port if asked."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import aiohttp
import uvicorn

from sente import serve, testapp
from tests.sente.conformance.replay import ServerThread

FAST = {"ws_kalive_ms": 60_000, "lp_timeout_ms": 1_000, "ms_allow_reconnect_before_close_ws": 300}


class Server(ServerThread):
    """ServerThread with options, an optional fixed port, and optionally no WebSocket support at all."""

    def __init__(self, port: int = 0, *, ws: bool = True, **options: Any) -> None:
        opts = {**FAST, **options}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.app = testapp.app(**opts)
        config = serve.uvicorn_config(self.app, "127.0.0.1", self.port, log_level="warning")
        if not ws:
            config.ws = "none"  # upgrades are not supported: the request is answered as plain HTTP
        self.server = uvicorn.Server(config)
        self.error = None
        import threading

        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # asyncio.run's way: tasks still pending when the server stops (the app's router) are cancelled and
        # awaited before the loop closes, so no coroutine is finalised later by the GC in another thread.
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.sock]))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except BaseException as e:
            self.error = e
        finally:
            loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/chsk"


async def session(server: Server, uid: str = "alice") -> dict[str, Any]:
    """Token and cookie from the app's /csrf-token, as client options."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.port}/csrf-token?uid={uid}") as r:
        token = await r.text()
        cookie = r.headers["Set-Cookie"].split(";")[0]
    return {"csrf_token": token, "headers": {"Cookie": cookie}}


def run(coro: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
    """Run one test coroutine, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
