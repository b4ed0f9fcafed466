"""Micro-benchmarks of the kernels one broadcast runs through, from the event to the bytes written per client.

The fan-out benchmark (``sente bench``) measures the server whole, from outside; these isolate its
pieces so a change to one shows up alone: the packers (encode one event, pack a push batch, wrap the envelope),
frame building, the core's broadcast + flush (grouping every uid onto one batch; the same for a uid-list push and
a send loop) and the server's write loop over in-memory transports (one prebuilt frame handed to every
connection). Codecs and the shared-memory ring and registry have their own suites (bench/test_codecs.py,
bench/test_shm.py).

Run: python3 -m pytest bench/test_fanout_kernels.py --benchmark-json=bench/results/fanout_kernels.json
Per-delivery figures: divide the fan-out cases' medians by ``extra_info["deliveries"]``.
"""

from __future__ import annotations

from typing import Any

import pytest

from sente.edn import Keyword
from sente.packers import EdnPacker, TransitPacker
from sente.protocol.requests import Request
from sente.protocol.server import Send
from sente.server import ChannelSocketServer
from sente.transport.frames import build_text_frame

F = Keyword("bench/f")
DATA = "F1:1732780800123456789:" + "x" * 77  # the fan-out benchmark's 100-byte event data
PACKERS = {"edn": EdnPacker(), "transit": TransitPacker()}
CLIENTS = (100, 1000, 5000)


@pytest.mark.parametrize("packer", PACKERS)
def test_encode_event(benchmark: Any, packer: str) -> None:
    benchmark(PACKERS[packer].encode_event, [F, DATA])


@pytest.mark.parametrize("events", (1, 20))
@pytest.mark.parametrize("packer", PACKERS)
def test_pack_batch(benchmark: Any, packer: str, events: int) -> None:
    p = PACKERS[packer]
    encoded = [p.encode_event([F, DATA])] * events
    benchmark(p.pack_batch, encoded)


@pytest.mark.parametrize("packer", PACKERS)
def test_pack_envelope(benchmark: Any, packer: str) -> None:
    benchmark(PACKERS[packer].pack_envelope, [Keyword("chsk/handshake"), ["u1", None, None, True]], None)


@pytest.mark.parametrize("size", (128, 2600))
def test_build_text_frame(benchmark: Any, size: int) -> None:
    benchmark(build_text_frame, "x" * size)


class MemoryConn:
    """Stands in for a picows WsConnection and its asyncio transport (``_raw``, what csente.fanout.write_frame
    writes to): keeps the last frames it is given."""

    __slots__ = ("_closing", "_fd", "_raw", "buffered_bytes", "closed", "frames", "request")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.buffered_bytes = 0
        self._closing = self.closed = False
        self._raw = self
        self._fd = -1  # no socket: write_frame goes through write

    def send_frame(self, frame: bytes) -> None:
        if len(self.frames) >= 64:
            self.frames.clear()
        self.frames.append(frame)  # never empty after a write

    write = send_frame

    def get_write_buffer_size(self) -> int:
        return 0


def _server(n: int) -> tuple[ChannelSocketServer, list[MemoryConn]]:
    chsk = ChannelSocketServer(user_id_fn=lambda req: req.param("uid"), csrf_token_fn=None, send_buf_ms_ws=0)
    conns = [MemoryConn() for _ in range(n)]
    for i, conn in enumerate(conns):
        request = Request("GET", "/chsk", query=(("client-id", f"c{i}"), ("uid", f"u{i}")))
        chsk._ws[conn] = conn  # type: ignore[assignment]
        chsk.core.ws_open(conn, request, 0.0)
    chsk.core.take_actions()  # the handshakes
    return chsk, conns


@pytest.mark.parametrize("n", CLIENTS)
def test_core_broadcast_flush(benchmark: Any, n: int) -> None:
    """One broadcast, flushed: encode once, group every uid onto one batch, emit one Send for all handles."""
    chsk, _ = _server(n)
    core = chsk.core
    benchmark.extra_info["deliveries"] = n

    def run() -> None:
        core.broadcast([F, DATA], 0.0)
        core.flush(0.0)
        core.take_actions()

    benchmark(run)


@pytest.mark.parametrize("n", CLIENTS)
def test_core_uid_list_flush(benchmark: Any, n: int) -> None:
    """One broadcast to the connected uids (a Sente app's uid-list push), flushed: as test_core_broadcast_flush,
    plus the uid set each push names."""
    chsk, _ = _server(n)
    core = chsk.core
    benchmark.extra_info["deliveries"] = n

    def run() -> None:
        core.broadcast([F, DATA], 0.0, uids=core.any_uids)
        core.flush(0.0)
        core.take_actions()

    benchmark(run)


@pytest.mark.parametrize("n", CLIENTS)
def test_core_send_loop_flush(benchmark: Any, n: int) -> None:
    """One event sent to every connected uid with a send per uid (Sente's ``(doseq [uid ...] (chsk-send! uid
    ev))``), flushed."""
    chsk, _ = _server(n)
    core = chsk.core
    benchmark.extra_info["deliveries"] = n

    def run() -> None:
        event = [F, DATA]
        for uid in core.any_uids:
            core.send(uid, event, 0.0)
        core.flush(0.0)
        core.take_actions()

    benchmark(run)


@pytest.mark.parametrize("n", CLIENTS)
def test_write_loop(benchmark: Any, n: int) -> None:
    """The server's write loop for one Send: build the frame once, hand it to every connection."""
    chsk, conns = _server(n)
    chsk.core.broadcast([F, DATA], 0.0)
    chsk.core.flush(0.0)
    sends = [a for a in chsk.core.take_actions() if isinstance(a, Send)]
    assert len(sends) == 1 and len(sends[0].handles) == n
    benchmark.extra_info["deliveries"] = n
    benchmark(chsk._write, sends[0])
    assert conns[0].frames


@pytest.mark.parametrize("n", CLIENTS)
def test_broadcast_end_to_end(benchmark: Any, n: int) -> None:
    """broadcast + flush + write to n in-memory connections: the server's whole per-event fan-out in Python."""
    chsk, _ = _server(n)
    core = chsk.core
    benchmark.extra_info["deliveries"] = n

    def run() -> None:
        core.broadcast([F, DATA], 0.0)
        core.flush(0.0)
        for action in core.take_actions():
            if isinstance(action, Send):
                chsk._write(action)

    benchmark(run)
