"""Starting and stopping the peers: each server is a subprocess in its own session, pinned to ``--server-cpus``.

A :class:`Peer` says how to start one server and which dialect the load generator speaks to it
(:mod:`sente.bench.loadgen`). :class:`RunningServer` starts it (``os.sched_setaffinity`` in the child before
exec, so a supervisor's workers inherit the pinning), waits until its port accepts connections and its ready line
is printed, and on exit terminates the whole process group (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .metrics import ProcessTree


def checkout() -> Path | None:
    """The csente source checkout around this package, if it is one: its ``bench/peers`` has the comparison peers."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "bench" / "peers" / "__init__.py").is_file() else None


@dataclass(frozen=True)
class Peer:
    """One server under test."""

    name: str
    dialect: str  # "sente", "sente-rig", "socketio" or "picows": what the load generator speaks
    argv: tuple[str, ...]  # without the port; {port} is appended as --port
    ready_text: str  # a line on stdout containing this means started
    path: str = "/"
    workers: int = 1
    notes: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def url(self, port: int) -> str:
        return f"ws://127.0.0.1:{port}{self.path}"


def has_cluster() -> bool:
    """Whether this install has the multi-process broker (``sente serve APP --workers N``)."""
    return importlib.util.find_spec("sente.cluster.supervisor") is not None


PEERS = "csente, csente-30ms, csente-uids, csente-send, csente-ref, csente-w<N>, picows, socketio"


def peer(name: str, packer: str = "edn") -> Peer:
    """The peer called ``name`` (see :data:`PEERS`), its csente servers on ``packer``; picows and socketio need a
    source checkout's ``bench/peers``."""
    py = sys.executable
    one = (py, "-m", "sente.bench.app", "--packer", packer)
    serve = (py, "-m", "sente", "serve", "--log-level", "warning", "--packer", packer)
    if name in ("picows", "socketio"):
        root = checkout()
        if root is None:
            raise ValueError(f"peer {name!r} lives in bench/peers of a csente source checkout, which an installed "
                             "package does not have; run it from a checkout, or leave it out of --peers")
        env = {"PYTHONPATH": str(root)}
        if name == "picows":
            return Peer(name, "picows", (py, "-m", "bench.peers.picows_server"), "READY", env=env,
                        notes="raw picows, 1 send/client/msg")
        return Peer(name, "socketio", (py, "-m", "bench.peers.socketio_app"), "READY", env=env,
                    path="/socket.io/?EIO=4&transport=websocket", notes="python-socketio on uvicorn")
    if name == "csente":
        return Peer(name, "sente", (*one, "--send-buf-ms-ws", "0"), "READY", path="/chsk",
                    notes="1 process, broadcast(event), adaptive flush (send_buf_ms_ws=0)")
    if name == "csente-30ms":
        return Peer(name, "sente", (*one, "--send-buf-ms-ws", "30"), "READY", path="/chsk",
                    notes="1 process, broadcast(event), Sente's default 30 ms window")
    if name in ("csente-uids", "csente-send"):
        how = "broadcast(event, connected_uids.any)" if name == "csente-uids" else "send(uid, event) per uid"
        return Peer(name, "sente", (*one, "--send-buf-ms-ws", "0", "--push", name[7:]), "READY", path="/chsk",
                    notes=f"1 process, {how}, adaptive flush")
    if name == "csente-ref":
        return Peer(name, "sente-rig", (*serve, "sente.testapp:app", "--workers", "0"), "sente: serving",
                    path="/chsk", notes="1 process, the reference app: [:test/broadcast-all x] pushes to "
                    "connected_uids.any (a uid list), Sente's default 30 ms window")
    if name.startswith("csente-w") and name[8:].isdigit():
        n = int(name[8:])
        if not has_cluster():
            raise ValueError(f"{name}: this install has no sente.cluster (sente serve --workers); run csente instead")
        return Peer(name, "sente", (*serve, "sente.bench.app:app", "--send-buf-ms-ws", "0", "--workers", str(n)),
                    "sente: serving", path="/chsk", workers=n,
                    notes=f"{n} workers (shared-memory backplane), adaptive flush")
    raise ValueError(f"unknown peer {name!r} ({PEERS})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """A started peer; use as a context manager so it is always stopped."""

    def __init__(self, spec: Peer, cpus: set[int] | None, log_path: Path, timeout: float = 30.0) -> None:
        self.spec = spec
        self.port = free_port()
        self.lines: list[str] = []
        self._ready = threading.Event()
        env = {**os.environ}
        for key, value in spec.env.items():
            env[key] = os.pathsep.join(filter(None, [value, env.get(key, "")])) if key == "PYTHONPATH" else value
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.proc = subprocess.Popen(
            [*spec.argv, "--port", str(self.port)], env=env, stdout=subprocess.PIPE,
            stderr=self._log, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=pin,
        )
        self.tree = ProcessTree(self.proc.pid)
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if self.spec.ready_text in line:
                self._ready.set()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode} before it was ready "
                                   f"(log: {self._log.name})")
            if self._ready.is_set():
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{self.spec.name} not ready within {timeout:.0f} s (log: {self._log.name})")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the server's process group, SIGKILL to what is left after ``grace`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers that outlived their supervisor
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        self._log.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
