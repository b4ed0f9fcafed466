"""One flooding client must not cost another client a request: per-connection shares of the receive buffer.

A WebSocket at ``max_queued_events_per_client`` is no longer read until the handlers catch up (it is throttled by
TCP), one far past it is closed with ``flood_close_code``; an Ajax client at its share gets 429. Meanwhile other
clients' echo requests all get their replies and nothing is dropped from the shared receive buffer.
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from sente.edn import Keyword
from sente.protocol.server import EventMsg
from tests.sente.conformance.replay import client_frame
from tests.sente.test_server import IO_TIMEOUT, Closed, assert_echoes, echo_server, make_server, run, serving
from tests.sente.transport.test_http import PushStream

K = Keyword


def test_a_flooding_websocket_is_throttled_and_others_lose_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        server = echo_server(recv_buffer=1_000)
        handled: dict[str, int] = {}

        @server.on("test/n")
        async def count(msg: EventMsg) -> None:
            handled[msg.client_id or ""] = handled.get(msg.client_id or "", 0) + 1
            await asyncio.sleep(0)  # a handler that yields, as real ones do

        floods_before = server.stats.rejected_flood
        async with serving(server) as peer:
            stop = server.start_router()
            try:
                stream = PushStream(server, await peer.ws("healthy"), "healthy")
                flooder = await peer.ws("flooder", client_id="flooder")
                frames = b"".join(client_frame(0x1, f"[[:test/n {i}] nil]".encode()) for i in range(20_000))
                others = [await peer.ws(f"u{i}") for i in range(5)]
                for i in range(0, len(frames), 4096):  # in TCP-sized pieces, so reads stay small
                    flooder.writer.write(frames[i:i + 4096])
                for _ in range(20):  # while the flood is being read
                    await asyncio.gather(*(assert_echoes(c, str(n)) for n, c in enumerate(others)))
                # Throttled (every event handled: it sent no more than TCP let it) or, when one read held more
                # than the whole buffer, closed with the flood code; either way its own events only.
                code = None
                for _ in range(3000):
                    if handled.get("flooder", 0) >= 20_000 or code is not None:
                        break
                    try:
                        await asyncio.wait_for(flooder.recv(), 0.01)
                    except TimeoutError:
                        pass
                    except Closed as closed:
                        code = closed.code
                assert handled.get("flooder") == 20_000 or code == 1008, (handled, code)
                if code is not None:
                    assert server.stats.rejected_flood > floods_before
                for _ in range(20):  # after it
                    await asyncio.gather(*(assert_echoes(c, str(n)) for n, c in enumerate(others)))
                assert server.dropped_events <= 20_000 - handled["flooder"]  # the flooder's own, if any
                await stream.check()
            finally:
                stop()

    with caplog.at_level(logging.WARNING):
        run(test)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_websocket_whose_frames_find_the_buffer_full_is_closed_with_flood_close_code() -> None:
    async def test() -> None:
        server = echo_server(recv_buffer=50, max_queued_events_per_client=10, flood_close_code=4029)
        gate = asyncio.Event()

        @server.on("test/n")
        async def slow(msg: EventMsg) -> None:
            await gate.wait()

        async with serving(server) as peer:
            stop = server.start_router()
            try:
                other = await peer.ws("other")
                flooder = await peer.ws("flooder")
                flooder.writer.write(b"".join(client_frame(0x1, f"[[:test/n {i}] nil]".encode()) for i in range(100)))
                with pytest.raises(Closed) as closed:
                    for _ in range(100):
                        await flooder.recv()
                assert closed.value.code == 4029
                gate.set()
                await assert_echoes(other)
                assert server.dropped_events == 1  # the flooder's message that found the buffer full; then closed
            finally:
                stop()

    run(test)


def test_an_ajax_client_at_its_share_gets_429_while_others_are_served() -> None:
    async def test() -> None:
        server = echo_server(max_queued_events_per_client=3)
        gate = asyncio.Event()

        @server.on("test/n")
        async def slow(msg: EventMsg) -> None:
            await gate.wait()

        async with serving(server) as peer:
            stop = server.start_router()
            try:
                for i in range(4):  # answered at once (no callback): one in the handler, three waiting
                    assert (await peer.ajax_post("f", "flooder-tab", f"[[:test/n {i}] nil]"))[0] == 200
                status, body = await peer.ajax_post("f", "flooder-tab", "[[:test/n 4] nil]")
                assert status == 429, body
                gate.set()
                other = f"b-{os.urandom(2).hex()}"
                assert await peer.ajax_post("b", other, "[[:test/echo 1] :ajax]") == (200, b"[1 nil]")
                await asyncio.sleep(0.05)
                assert (await peer.ajax_post("f", "flooder-tab", "[[:test/n 5] nil]"))[0] == 200  # caught up
            finally:
                stop()

    run(test)


def test_without_a_reader_the_buffer_slides_as_before_and_nobody_is_paused() -> None:
    async def test() -> None:
        server = make_server(recv_buffer=5, max_queued_events_per_client=2)  # no handlers: no router
        async with serving(server) as peer:
            client = await peer.ws("alice")
            for i in range(50):
                client.send(f"[[:test/n {i}] nil]")
            client.send('[[:chsk/ws-ping] "cb1"]')
            assert await asyncio.wait_for(client.recv(), IO_TIMEOUT) == '["pong" "cb1"]'  # still read
            assert server.dropped_events > 0

    run(test)
