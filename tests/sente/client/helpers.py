"""Our server on 127.0.0.1 for the client tests: the reference test app, fast timeouts, a fixed port if asked."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import aiohttp

from sente import testapp
from tests.sente.conformance.replay import AppThread

FAST = {"ws_kalive_ms": 60_000, "lp_timeout_ms": 1_000, "ms_allow_reconnect_before_close_ws": 300}


class Server(AppThread):
    """The reference test app with options, an optional fixed port, and optionally no WebSocket support at all."""

    def __init__(self, port: int = 0, *, ws: bool = True, **options: Any) -> None:
        self.app = testapp.app(**{**FAST, **options})
        super().__init__(self.app, port, ws=ws)

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
