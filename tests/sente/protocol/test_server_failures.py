"""One batch that cannot be packed, or one action that cannot be carried out, costs nobody else a message.

The core skips the batch (counted in ``send_errors``, one rate-limited warning) and flushes the rest; the
server's action pump skips the action and carries out the others; the packers themselves write lone
surrogates as Sente's JVM server does, so they never produce such a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from csente.types import Keyword
from sente import server as sente_server
from sente.packers import EdnPacker, TransitPacker
from sente.protocol import server as protocol_server
from sente.protocol.config import ServerConfig
from sente.protocol.server import Send, ServerCore
from sente.protocol.stats import counters
from sente.server import ChannelSocketServer
from tests.sente.protocol.test_server import open_ws, sends

K = Keyword


class PoisonPacker(EdnPacker):
    """A custom packer that breaks on a batch holding the string "poison" (a bug, not a refused value: those are
    TypeError/ValueError, counted as pack_errors)."""

    def pack_batch(self, encoded_events: Sequence[Any]) -> str:
        if any("poison" in e for e in encoded_events):
            raise RuntimeError("cannot pack poison")
        return super().pack_batch(encoded_events)


@pytest.fixture(autouse=True)
def fresh_ratelog() -> None:
    """Each test sees its first warning of a kind (the rate limit is per process)."""
    protocol_server._client_log._state.clear()
    sente_server._client_log._state.clear()


def test_a_batch_the_packer_cannot_pack_is_skipped_and_the_flush_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    core = ServerCore(PoisonPacker(), ServerConfig())
    open_ws(core, "A", uid="alice", client_id="a")
    open_ws(core, "B", uid="bob", client_id="b")
    before = counters().send_errors
    for n in range(3):
        core.send("alice", [K("t/x"), "poison"], 0)
        core.send("bob", [K("t/x"), n], 0)
        core.flush(0)
    out = sends(core.take_actions())
    assert out == [(("B",), f"[[[:t/x {n}]] nil]") for n in range(3)]
    assert counters().send_errors - before == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "packer raised" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line for the three
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


class RefusingPacker(EdnPacker):
    """A packer that refuses a value at batch time, as transit does for a value it cannot write."""

    def pack_batch(self, encoded_events: Sequence[Any]) -> str:
        if any("refused" in e for e in encoded_events):
            raise TypeError("cannot write refused")
        return super().pack_batch(encoded_events)


def test_a_batch_holding_a_refused_value_is_dropped_and_counted_per_event(caplog: pytest.LogCaptureFixture) -> None:
    core = ServerCore(RefusingPacker(), ServerConfig())
    open_ws(core, "A", uid="alice", client_id="a")
    open_ws(core, "B", uid="bob", client_id="b")
    before = counters().pack_errors
    core.send("alice", [K("t/x"), "refused"], 0)
    core.send("alice", [K("t/x"), "also"], 0)
    core.send("bob", [K("t/x"), 1], 0)
    core.flush(0)
    assert sends(core.take_actions()) == [(("B",), "[[[:t/x 1]] nil]")]
    assert counters().pack_errors - before == 2  # the batch held two events
    assert any("cannot write" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("packer", [EdnPacker(), TransitPacker("json"), TransitPacker("msgpack")])
def test_the_packers_write_lone_surrogates_as_the_jvm_does(packer: Any) -> None:
    data = packer.pack(["\ud800", "a\ud83d\ude00b", K("k\udc00")])
    raw = data if isinstance(data, bytes) else data.encode()  # must have a UTF-8 form
    back = packer.unpack(data)
    if packer.name == "edn" or packer.binary:
        assert back == ["?", "a\U0001F600b", K("k?")]
    else:  # transit-json escapes it as transit-clj does (\uD800), so it reads back as is
        assert b"\\uD800" in raw and back[0] == "\ud800"


def test_the_pump_skips_an_action_that_raises_and_carries_out_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server = ChannelSocketServer(csrf_token_fn=None)
        written: list[Any] = []

        class Conn:
            def __init__(self, fail: bool) -> None:
                self.fail = fail

            def send_text(self, data: str) -> None:
                if self.fail:
                    raise UnicodeEncodeError("utf-8", data, 0, 1, "surrogates not allowed")
                written.append(data)

        bad, good = Conn(True), Conn(False)
        server._ws[bad] = bad  # type: ignore[assignment]
        server._ws[good] = good  # type: ignore[assignment]
        before = counters().send_errors
        server.core._actions += [Send((bad,), "x"), Send((good,), "y"), Send((bad,), "z"), Send((good,), "w")]
        server._pump()
        assert written == ["y", "w"]
        assert counters().send_errors - before == 2

    asyncio.run(main())
    assert len([r for r in caplog.records if "could not be carried out" in r.getMessage()]) == 1
