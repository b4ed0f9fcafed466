"""Any uid works under ``sente serve --workers 2``: uids longer than the registry's 112-byte keys, multi-byte ones.

For each uid (111, 200 and 1,000 bytes of ASCII, 40 and 400 CJK characters), a WebSocket client and an Ajax
client of it (our own client; the Ajax one on a new connection per request, so both workers serve it) get:
pushes to the uid (``GET /push``, landing on either worker), and a broadcast to ``connected-uids`` made on
either worker (which lists the long uids of the other worker too). Nothing is refused, nothing lost, and the
log has no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from sente.client import connect
from sente.edn import Keyword
from tests.sente.cluster.test_ajax_spread import AjaxClient, fetch
from tests.sente.cluster.test_supervisor import Cluster, cluster

K = Keyword
UIDS = ["a" * 111, "u" * 200, "x" * 1000, "中" * 40, "文" * 400]
PUSHES = 6


@pytest.fixture(scope="module")
def broker() -> Iterator[Cluster]:
    with cluster("tests.sente.cluster.spread_app:app") as c:
        yield c


async def ws_client(port: int, uid: str, stack: contextlib.AsyncExitStack) -> tuple[Any, list[Any]]:
    status, _, token, headers = await fetch(port, "GET", f"/csrf-token?uid={quote(uid)}")
    assert status == 200
    cookie = next(v for k, v in headers if k.lower() == "set-cookie").split(";", 1)[0]
    client = await stack.enter_async_context(connect(
        f"http://127.0.0.1:{port}/chsk", type="ws", csrf_token=token, headers={"Cookie": cookie},
    ))
    got: list[Any] = []
    client.on("test/server-push")(lambda msg: got.append(("push", msg.data)))
    client.on("test/broadcast")(lambda msg: got.append(("broadcast", msg.data)))
    return client, got


async def until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def test_uids_longer_than_a_registry_key_work_over_websocket_and_ajax(broker: Cluster) -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            ws = [await ws_client(broker.port, uid, stack) for uid in UIDS]
            ajax = [AjaxClient(broker.port, uid) for uid in UIDS]
            pollers = []
            for a in ajax:
                await a.start()
                _, payload = await a.get(handshake=True)
                assert payload[0] == K("chsk/handshake") and payload[1][0] == a.uid
                pollers.append(asyncio.get_running_loop().create_task(a.poll_forever()))
            try:
                await asyncio.sleep(0.3)  # every Ajax client has polled once: it counts as connected
                workers = set()
                for n in range(PUSHES):
                    for uid in UIDS:
                        status, worker, body, _ = await fetch(broker.port, "GET", f"/push?to={quote(uid)}&x={n}")
                        assert status == 200, body
                        workers.add(worker)
                for n in range(2):  # broadcasts to connected-uids :any, made by a client on each worker
                    ws[n][0].send([K("test/broadcast-all"), 100 + n])
                want_ws = {("push", n) for n in range(PUSHES)} | {("broadcast", 100), ("broadcast", 101)}
                await until(lambda: all(want_ws <= set(got) for _, got in ws)
                            and all(len(a.events) >= PUSHES + 2 for a in ajax))
                assert workers == {0, 1}, workers
                for uid, (_, got) in zip(UIDS, ws, strict=True):
                    assert set(got) == want_ws, f"WebSocket client of a {len(uid.encode())}-byte uid got {got}"
                    assert len(got) == len(want_ws)
                want = sorted([("server-push", n) for n in range(PUSHES)] + [("broadcast", 100), ("broadcast", 101)])
                for a in ajax:
                    seen = sorted((e[0].name, e[1]) for e in a.events)
                    assert seen == want, f"Ajax client of a {len(a.uid.encode())}-byte uid got {seen}"
            finally:
                for p in pollers:
                    p.cancel()
                await asyncio.gather(*pollers, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 60))
    log = broker.log()
    assert "Traceback" not in log, log[-3000:]
