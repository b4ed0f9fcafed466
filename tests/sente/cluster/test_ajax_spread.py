"""One Ajax client on ``sente serve --workers 2`` with no sticky sessions: every request on a new TCP connection.

The kernel spreads the connections over both workers (``SO_REUSEPORT``); the app tags each response with
``X-Sente-Worker`` (``spread_app``) so the test sees that one client's polls, POSTs and the pushes really landed
on both. The client handshakes once; pushes (``GET /push``, on either worker) each arrive exactly once over its
polls, wherever they land; a POST with a callback gets its reply from whichever worker it reaches.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from sente.edn import Keyword
from tests.sente.cluster.test_supervisor import EDN, IO_TIMEOUT, Cluster, cluster
from tests.sente.conformance.replay import header, read_http_response

PUSHES = 40
K = Keyword


@pytest.fixture(scope="module")
def spread() -> Iterator[Cluster]:
    with cluster("tests.sente.cluster.spread_app:app") as c:
        yield c


async def fetch(port: int, method: str, target: str, headers: dict[str, str] | None = None, body: str = "",
                timeout: float = IO_TIMEOUT) -> tuple[int, int, str, list[tuple[str, str]]]:
    """One request on a new connection: (status, worker, body, headers)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
    try:
        data = body.encode()
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        if method == "POST":
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(data)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
        _, status, _, got_headers, got = await asyncio.wait_for(read_http_response(reader), timeout)
        return status, int(header(got_headers, "x-sente-worker") or -1), got.decode(), got_headers
    finally:
        writer.close()


class AjaxClient:
    def __init__(self, port: int, uid: str) -> None:
        self.port, self.uid, self.client_id = port, uid, str(uuid.uuid4())
        self.headers: dict[str, str] = {}
        self.handshakes = 0
        self.events: list[Any] = []
        self.poll_workers: list[int] = []

    async def start(self) -> None:
        status, _, token, headers = await fetch(self.port, "GET", f"/csrf-token?uid={quote(self.uid)}")
        assert status == 200
        cookie = header(headers, "set-cookie")
        assert cookie is not None
        self.headers = {"Cookie": cookie.split(";", 1)[0], "X-CSRF-Token": token,
                        "X-Requested-With": "XMLHTTPRequest"}

    async def get(self, handshake: bool = False) -> tuple[int, Any]:
        query = {"udt": str(int(time.time() * 1000)), "client-id": self.client_id}
        if handshake:
            query["handshake?"] = "1"
        status, worker, body, _ = await fetch(self.port, "GET", "/chsk?" + urlencode(query), self.headers,
                                              timeout=30)
        assert status == 200, body
        return worker, EDN.unpack_envelope(body).payload

    async def poll_forever(self) -> None:
        while True:
            worker, payload = await self.get()
            self.poll_workers.append(worker)
            if isinstance(payload, list) and payload and payload[0] == K("chsk/handshake"):
                self.handshakes += 1
            elif payload != [K("chsk/timeout"), None]:
                self.events.extend(payload)

    async def post(self, event: list[Any], cb: str) -> tuple[int, Any]:
        ppstr = str(EDN.pack_envelope(event, cb))
        form = urlencode({"udt": str(int(time.time() * 1000)), "client-id": self.client_id, "ppstr": ppstr},
                         quote_via=quote)
        status, worker, body, _ = await fetch(self.port, "POST", "/chsk", self.headers, form)
        assert status == 200, body
        return worker, EDN.unpack_envelope(body).payload


def test_pushes_reach_a_spread_ajax_client_exactly_once(spread: Cluster) -> None:
    async def run() -> tuple[AjaxClient, list[int]]:
        client = AjaxClient(spread.port, "spread-1")
        await client.start()
        _, payload = await client.get(handshake=True)
        assert payload[0] == K("chsk/handshake")
        poller = asyncio.get_running_loop().create_task(client.poll_forever())
        push_workers = []
        rng = random.Random(7)
        try:
            await asyncio.sleep(0.3)
            for n in range(PUSHES):
                status, worker, _, _ = await fetch(spread.port, "GET", f"/push?to={client.uid}&x={n}")
                assert status == 200
                push_workers.append(worker)
                await asyncio.sleep(rng.uniform(0, 0.12))
            deadline = time.monotonic() + 10
            while len(client.events) < PUSHES and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything sent twice would arrive by now
        finally:
            poller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await poller
        return client, push_workers

    client, push_workers = asyncio.run(run())
    assert set(client.poll_workers) == {0, 1}, client.poll_workers
    assert set(push_workers) == {0, 1}, push_workers
    assert client.handshakes == 0, "a poll on the other worker was answered with a handshake"
    got = [e[1] for e in client.events]
    assert all(e[0] == K("test/server-push") for e in client.events)
    assert sorted(got) == list(range(PUSHES)), got  # each push exactly once
    print(f"\n{len(client.poll_workers)} polls on workers {client.poll_workers}; pushes on {push_workers}")


def test_a_post_with_a_callback_is_answered_wherever_it_lands(spread: Cluster) -> None:
    async def run() -> list[tuple[int, Any]]:
        client = AjaxClient(spread.port, "spread-2")
        await client.start()
        await client.get(handshake=True)
        return [await client.post([K("test/echo"), {K("n"): i}], f"cb{i}") for i in range(16)]

    replies = asyncio.run(run())
    assert [payload for _, payload in replies] == [{K("n"): i} for i in range(16)]
    assert {worker for worker, _ in replies} == {0, 1}, replies
