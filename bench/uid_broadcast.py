"""``broadcast(event, uids)`` under the broker: how many deliveries arrive, and how many inbox records drop.

Starts ``sente serve sente.testapp:app --workers 2`` on a free loopback port, connects ``-n`` WebSocket clients
(our client, one uid each; the kernel spreads them over both workers), and has the first one send
``[:test/broadcast-all [n pad]]`` ``--rate`` times a second for ``--seconds`` (the test app broadcasts it to
``connected-uids``: a uid set, the way Sente apps push to a room). Prints one JSON line: deliveries expected and
received, the loss, ``sente_ring_drops_total``, WARNING lines in the broker's log.

    python -m bench.uid_broadcast -n 500 --payload 16000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from sente.client import connect
from sente.edn import Keyword

K = Keyword


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[str, str]:
    """(body, session cookie) of one GET."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        cookie = (r.headers.get("Set-Cookie") or "").split(";", 1)[0]
        return r.read().decode(), cookie


async def _client(port: int, uid: str, got: set[int], stack: contextlib.AsyncExitStack) -> Any:
    token, cookie = await asyncio.to_thread(_get, port, f"/csrf-token?uid={uid}")
    client = await stack.enter_async_context(connect(
        f"http://127.0.0.1:{port}/chsk", type="ws", csrf_token=token, headers={"Cookie": cookie}))
    client.on("test/broadcast")(lambda msg: got.add(msg.data[0]))
    return client


async def run(port: int, n: int, payload: int, rate: float, seconds: float) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        got: list[set[int]] = [set() for _ in range(n)]
        clients = []
        for i in range(0, n, 50):
            clients += await asyncio.gather(*(_client(port, f"b{j}", got[j], stack) for j in range(i, min(n, i + 50))))
        await asyncio.sleep(0.5)
        pad, sent, start = "p" * payload, int(rate * seconds), time.monotonic()
        for k in range(sent):
            clients[0].send([K("test/broadcast-all"), [k, pad]])
            await asyncio.sleep(max(0.0, start + (k + 1) / rate - time.monotonic()))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(len(g) >= sent for g in got):
            await asyncio.sleep(0.1)
        metrics, _ = await asyncio.to_thread(_get, port, "/metrics")
    delivered = sum(len(g) for g in got)
    drops = sum(float(v) for v in re.findall(r"^sente_ring_drops_total\{[^}]*\} (\S+)$", metrics, re.M))
    return {"clients": n, "payload_bytes": payload, "broadcasts": sent, "expected": sent * n, "delivered": delivered,
            "lost_pct": round(100 * (1 - delivered / (sent * n)), 2), "ring_drops": drops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="clients (default 200)")
    parser.add_argument("--payload", type=int, default=4000, help="padding bytes per broadcast (default 4000)")
    parser.add_argument("--rate", type=float, default=10.0, help="broadcasts per second (default 10)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sente", "serve", "sente.testapp:app", "--workers", "2",
                                 "--port", str(port), "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=log)
        try:
            ready: set[int] = set()
            deadline = time.monotonic() + 30
            while ready != {0, 1} and time.monotonic() < deadline:  # both workers listening (kernel's pick)
                with contextlib.suppress(OSError, ValueError):
                    ready.add(json.loads(_get(port, "/readyz")[0])["worker"])
                time.sleep(0.02)
            result = asyncio.run(run(port, args.n, args.payload, args.rate, args.seconds))
        finally:
            proc.terminate()
            proc.wait(15)
        log.seek(0)
        result["warning_lines"] = log.read().count(" WARNING ")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
