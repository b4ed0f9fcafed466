"""``sente serve --packer msgpack`` (and msgpack+gzip, edn+gzip) with the Python client, over WebSocket and
Ajax: binary frames and octet-stream bodies both ways, replies, pushes, and messages above the gzip threshold."""

from __future__ import annotations

import aiohttp
import pytest

from csente.types import Keyword as K
from sente.client import connect

from .client.helpers import run
from .test_serve import sente_serve


async def _session(port: int) -> dict[str, object]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/csrf-token?uid=alice") as r:
        token = await r.text()
        cookie = r.headers["Set-Cookie"].split(";")[0]
    return {"csrf_token": token, "headers": {"Cookie": cookie}}


@pytest.mark.parametrize(("packer", "workers"), [("msgpack", "0"), ("msgpack+gzip", "0"), ("edn+gzip", "0"),
                                                ("msgpack", "2")])  # 2 workers: Ajax polls may land on either
def test_sente_serve_with_a_binary_packer_talks_to_the_python_client(packer: str, workers: str) -> None:
    with sente_serve("sente.testapp:app", "--packer", packer, "--workers", workers) as (_, port, first):
        assert f"packer {packer}" in first

        async def main() -> None:
            url = f"http://127.0.0.1:{port}/chsk"
            for type in ("ws", "ajax"):
                async with connect(url, type=type, packer=packer, **await _session(port)) as c:
                    assert c.state.open and c.state.uid == "alice" and c.state.type == type
                    value = {"a": [1, "ü", 1.5], "big": "y" * 3000}  # the reply is above the gzip threshold
                    assert await c.request(["test/echo", value], timeout=3) == value
                    assert c.send(["test/push-many", [3, "x"]])
                    got = [await c.next_event(3) for _ in range(3)]
                    assert [m.event for m in got] == [[K("test/pushed"), [i, "x"]] for i in range(3)]

        run(main(), timeout=30)
