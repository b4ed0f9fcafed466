"""ASGI plumbing for Sente's endpoint: requests in, responses out, and WebSockets over ASGI (the portable path).

Used by the server for Ajax on any ASGI server, and for WebSockets when the server is mounted inside
another ASGI application (Starlette, FastAPI) instead of running with the picows bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from ..protocol.config import Response
from ..protocol.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOO_LARGE = Response(413, "Request body too large", (("Content-Type", "text/plain; charset=utf-8"),))


def parse_cookies(header: str | None) -> dict[str, str]:
    """Cookie header → dict; a malformed header yields what could be read."""
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(CookieError):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def route_path(scope: Scope) -> str:
    """The request's path inside the app it reached: ``path`` less the ``root_path`` a mount added.

    Starlette (0.33+) keeps the full path in ``path`` and adds what a ``Mount`` matched to ``root_path``; older
    mounts and some servers strip the prefix from ``path`` themselves: then ``path`` is already the answer.
    """
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


def request_from_scope(scope: Scope, body: bytes = b"") -> Request:
    """Our :class:`Request` from an ASGI http or websocket scope (and the body, for a form POST)."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    form: list[tuple[str, str]] = []
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    cookies = parse_cookies(next((v for k, v in headers if k.lower() == "cookie"), None))
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET"),
        path=scope.get("path", ""),
        query=query,
        headers=headers,
        cookies=cookies,
        form=form,
        body=body,
        client=(client[0], client[1]) if client else None,
        scope=scope,
    )


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds ``limit`` bytes or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, response: Response, extra_headers: list[tuple[str, str]] | None = None) -> None:
    """Write a complete HTTP response."""
    body = response.body.encode("utf-8") if isinstance(response.body, str) else response.body
    headers = list(response.headers) + (extra_headers or [])
    if not any(k.lower() == "content-type" for k, _ in headers):
        kind = "text/html; charset=utf-8" if isinstance(response.body, str) else "application/octet-stream"
        headers.append(("Content-Type", kind))
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (used while a long-poll or POST is held)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class AsgiWebSocket:
    """A WebSocket accepted over ASGI, with the same sending surface as the picows bridge's connections.

    Sends are queued (the ASGI ``send`` is a coroutine) and written in order by one writer task;
    ``buffered_bytes`` counts what is queued, for the slow-consumer cap.
    """

    def __init__(self, send: Send, request: Request) -> None:
        self.request = request
        self.buffered_bytes = 0
        self._send = send
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())
        self.closed = False

    def send_text(self, text: str) -> None:
        self._put({"type": "websocket.send", "text": text}, len(text))

    def send_bytes(self, data: bytes) -> None:
        self._put({"type": "websocket.send", "bytes": data}, len(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait({"type": "websocket.close", "code": code, "reason": reason})
            self._queue.put_nowait(None)

    def _put(self, message: Message, size: int) -> None:
        if not self.closed:
            self.buffered_bytes += size
            self._queue.put_nowait(message)

    async def _write(self) -> None:
        while (message := await self._queue.get()) is not None:
            try:
                await self._send(message)
            except Exception:  # the peer is gone; the receive loop reports the close
                return
            finally:
                if message["type"] == "websocket.send":
                    self.buffered_bytes -= len(message.get("text") or message.get("bytes") or b"")

    async def finish(self) -> None:
        """Stop the writer once the socket is gone."""
        self.closed = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
