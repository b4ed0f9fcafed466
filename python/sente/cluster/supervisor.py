"""The supervisor of ``sente serve APP --workers N``: shared memory, N worker processes, restarts, signals.

Why a supervisor: one asyncio process serves one core. N workers each bind the same host:port with
``SO_REUSEPORT`` (the kernel spreads new connections) and share one :class:`csente.shm.SharedState` (the uid
registry and the delivery lanes between workers). Someone has to create that segment before the workers attach,
notice a worker that dies, take back what it owned and start another one, and turn SIGTERM into an orderly drain:
that is this module. The supervisor serves no traffic itself.

Lifecycle (:meth:`Supervisor.run`):

* Removes segments left by supervisors that died without cleaning up (names ``sente-<pid>-<hex>`` whose pid is
  gone), creates the segment ``sente-<its pid>-<8 hex digits>`` in /dev/shm with ``workers=N``, and next to it
  the counters file ``<name>.stats`` (:class:`ClusterStats`). All of them are unlinked when it exits, on every
  path but SIGKILL (and the next supervisor removes those).
* Checks that host:port is free, then keeps one bound (not listening) ``SO_REUSEPORT`` socket on it for its
  whole life: another program cannot take the port while a worker restarts, and port 0 becomes one real port
  that every worker binds.
* Starts worker i as ``python -m sente.cluster.worker`` (:mod:`sente.cluster.worker`) in its own process group
  (a terminal's Ctrl-C reaches the supervisor only, which forwards it). A worker reports "ready" with one byte
  on an inherited pipe, once it is attached and listening. Unless ``SENTE_SESSION_SECRET`` is set already, the
  supervisor makes one for its workers, so each reads the signed session cookies of the others
  (:mod:`sente.sessions`), restarted ones included.
* A worker that exits while the supervisor runs (SIGKILL included) is noticed at once (SIGCHLD through the
  signal wake-up fd), reaped, then ``reclaim_worker(i)`` (the shm module's rule: reap, reclaim, restart), and
  restarted with the same index: immediately if it had served for a second or more, else after a backoff that
  doubles from 0.1 s to 5 s. Each restart is counted in :class:`ClusterStats`. A worker index that exits three
  times in a row without ever becoming ready is a configuration problem (port taken, app factory raising): the
  supervisor stops everything and exits 1.
* Reclaimed uids left the whole broker; a live worker must fire ``:chsk/uidport-close`` for them. The
  ``on_reclaimed(index, uids)`` hook gets them; by default they are logged and published to the lowest-index
  running worker (the restarting worker's own index when none runs; its replacement reads its inbox), one control
  message per uid: ``kind=KIND_CONTROL, key=<the uid's registry key>, payload=UIDPORT_CLOSE (b"uidport-close")``
  (plus ``b" "`` and the uid's EDN when the key is a digest: a long uid, whose text the dead worker kept out of
  line; those files are removed once the messages are queued).
  A full lane is retried every 50 ms, so none is lost while the target lives.
* SIGTERM, SIGINT or SIGHUP: SIGTERM to every worker (each drains: WebSockets closed with 1012, held long-polls
  answered, exit 0), SIGKILL for those still running ``shutdown_timeout`` seconds later; a second signal kills at
  once. Exit status 0 when every worker exited 0 in time, else 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import mmap
import os
import re
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from types import FrameType

from csente.shm import KIND_CONTROL, SharedState

from ..config import Settings
from ..metrics import MetricsBlock
from ..sessions import SECRET_ENV
from ..transport.sockets import bind_socket
from .backplane import LONG_PREFIX, UIDPORT_CLOSE, read_long_uid, remove_long_uids

log = logging.getLogger("sente.cluster.supervisor")

SHM_DIRECTORY = "/dev/shm"
NAME_PREFIX = "sente-"
MAX_START_FAILURES = 3
"""Consecutive exits before "ready" after which the supervisor gives up (exit 1)."""
HEALTHY_AFTER_S = 1.0
"""A worker that served this long is restarted at once; one that died sooner waits (backoff)."""
BACKOFF_S = (0.1, 5.0)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_STALE = re.compile(r"sente-(\d+)-[0-9a-f]{8}(\.wake\d+|\.stats|\.metrics|\.uid-[0-9a-f]+\.\d+(\.tmp)?)?")

ReclaimHook = Callable[[int, list[bytes]], None]


# ---------------------------------------------------------------------- counters the workers can read


class ClusterStats:
    """Supervisor-written counters, readable by any process: the 4 KiB file ``<dir>/<shm name>.stats``.

    The metrics endpoint of a worker reads them with ``ClusterStats.attach(current().shared.name)``.
    Layout, native-endian unsigned 64-bit words (only the supervisor writes, one aligned word at a time)::

        0  magic (b"CSSTATS1")   1  workers   2  supervisor pid   3  restarts, all workers together
        8 + i   restarts of worker i (i < 32)
        40 + i  pid of worker i (0 while none runs)
    """

    MAGIC = int.from_bytes(b"CSSTATS1", "little")
    SIZE = 4096
    _RESTARTS, _PIDS = 8, 40

    def __init__(self, path: str, mapping: mmap.mmap) -> None:
        self.path = path
        self._map = mapping
        self._words = memoryview(mapping).cast("Q")

    @classmethod
    def create(cls, name: str, workers: int, directory: str = SHM_DIRECTORY) -> ClusterStats:
        path = os.path.join(directory, name + ".stats")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, cls.SIZE)
            stats = cls(path, mmap.mmap(fd, cls.SIZE))
        finally:
            os.close(fd)
        stats._words[1] = workers
        stats._words[2] = os.getpid()
        stats._words[0] = cls.MAGIC
        return stats

    @classmethod
    def attach(cls, name: str, directory: str = SHM_DIRECTORY) -> ClusterStats:
        path = os.path.join(directory, name + ".stats")
        fd = os.open(path, os.O_RDWR)
        try:
            stats = cls(path, mmap.mmap(fd, cls.SIZE))
        finally:
            os.close(fd)
        if stats._words[0] != cls.MAGIC:
            stats.close()
            raise ValueError(f"{path} is not a csente stats file")
        return stats

    @property
    def workers(self) -> int:
        return int(self._words[1])

    @property
    def supervisor_pid(self) -> int:
        return int(self._words[2])

    @property
    def restarts_total(self) -> int:
        return int(self._words[3])

    def restarts(self, index: int) -> int:
        return int(self._words[self._RESTARTS + index])

    def worker_pid(self, index: int) -> int:
        return int(self._words[self._PIDS + index])

    def count_restart(self, index: int) -> None:
        self._words[self._RESTARTS + index] += 1
        self._words[3] += 1

    def set_pid(self, index: int, pid: int) -> None:
        self._words[self._PIDS + index] = pid

    def close(self) -> None:
        self._words.release()
        self._map.close()

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def remove_stale_segments(directory: str = SHM_DIRECTORY) -> list[str]:
    """Unlink the segments, FIFOs and stats files of supervisors that are gone (killed before cleaning up)."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            m = _STALE.fullmatch(entry)
            if m is None or _alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- the supervisor


@dataclasses.dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    started_at: float = 0.0
    failures: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def just_exited(self) -> bool:
        """True once, when the process has exited since the last look (``poll`` reaps it)."""
        return self.proc is not None and self.proc.returncode is None and self.proc.poll() is not None


class Supervisor:
    """Runs APP in ``settings.workers`` worker processes; see the module docstring."""

    def __init__(
        self,
        app_spec: str,
        settings: Settings,
        *,
        on_reclaimed: ReclaimHook | None = None,
        directory: str = SHM_DIRECTORY,
    ) -> None:
        if settings.workers < 1:
            raise ValueError("the supervisor needs settings.workers >= 1")
        self.app_spec = app_spec
        self.settings = settings
        self.directory = directory
        self.on_reclaimed: ReclaimHook = on_reclaimed if on_reclaimed is not None else self.hand_off_uids
        self.name = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.port = settings.port
        self.shared: SharedState | None = None
        self.stats: ClusterStats | None = None
        self.metrics: MetricsBlock | None = None
        self._workers = [_Worker(i) for i in range(settings.workers)]
        self._control: deque[tuple[bytes, bytes]] = deque()  # (registry key, payload) of uidport-close messages
        self._on_started: Callable[[Supervisor], None] | None = None
        self._signals: list[int] = []
        self._selector = selectors.DefaultSelector()
        self._fatal: str | None = None
        self._env = dict(os.environ)
        self._env.setdefault(SECRET_ENV, secrets.token_urlsafe(32))  # one signing key: every worker reads every session

    # ------------------------------------------------------------------ run

    def run(self, on_started: Callable[[Supervisor], None] | None = None) -> int:
        """Start everything, supervise until a stop signal, drain, clean up; the exit status."""
        reserved: socket.socket | None = None
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_handlers: dict[int, signal.Handlers | Callable[[int, FrameType | None], object] | int | None] = {}
        old_wakeup = -1
        try:
            remove_stale_segments(self.directory)
            reserved = self._reserve_port()
            self.shared = SharedState.create(self.name, workers=len(self._workers), directory=self.directory)
            self.stats = ClusterStats.create(self.name, len(self._workers), self.directory)
            self.metrics = MetricsBlock.create(self.name, len(self._workers), self.directory)  # workers' counters
            self._selector.register(wake_r, selectors.EVENT_READ, None)
            old_wakeup = signal.set_wakeup_fd(wake_w)
            for sig in (*STOP_SIGNALS, signal.SIGCHLD):
                old_handlers[sig] = signal.signal(sig, self._on_signal)
            for w in self._workers:
                self._start(w)
            self._on_started = on_started  # called once every worker is ready (see _ready_event)
            self._supervise(wake_r)
            return self._stop(wake_r)
        finally:
            self._kill_all()
            if old_handlers:
                signal.set_wakeup_fd(old_wakeup)
                for old_sig, handler in old_handlers.items():
                    signal.signal(old_sig, handler)
            self._cleanup(reserved, wake_r, wake_w)

    def _reserve_port(self) -> socket.socket:
        host = self.settings.host
        with bind_socket(host, self.settings.port, reuse_port=False, listen=False) as probe:
            port = probe.getsockname()[1]  # free (nobody, SO_REUSEPORT or not, holds it); port 0 resolved
        sock = bind_socket(host, port, reuse_port=True, listen=False)
        self.port = port
        return sock

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        if sig != signal.SIGCHLD:
            self._signals.append(sig)

    def _supervise(self, wake_r: int) -> None:
        while not self._signals and self._fatal is None:
            self._wait(wake_r, self._next_timeout())
            self._reap()
            if self._signals or self._fatal is not None:
                return
            now = time.monotonic()
            for w in self._workers:
                if w.restart_at is not None and w.restart_at <= now:
                    self._start(w)
            self._flush_control()

    def _next_timeout(self) -> float:
        timeout = 0.5
        if self._control:
            timeout = 0.05
        now = time.monotonic()
        for w in self._workers:
            if w.restart_at is not None:
                timeout = min(timeout, max(0.0, w.restart_at - now))
        return timeout

    def _wait(self, wake_r: int, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            if key.fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            else:
                self._ready_event(key.data)

    def _ready_event(self, w: _Worker) -> None:
        assert w.ready_fd is not None
        try:
            data = os.read(w.ready_fd, 16)
        except BlockingIOError:
            return
        if data.startswith(b"R") and w.running:
            w.ready = True
            w.failures = 0
            assert w.proc is not None
            log.info("worker %d ready (pid %d)", w.index, w.proc.pid)
            if self._on_started is not None and all(x.ready for x in self._workers):
                announce, self._on_started = self._on_started, None
                announce(self)
        if not data or data.startswith(b"R"):
            self._close_ready(w)

    def _close_ready(self, w: _Worker) -> None:
        if w.ready_fd is not None:
            self._selector.unregister(w.ready_fd)
            os.close(w.ready_fd)
            w.ready_fd = None

    # ------------------------------------------------------------------ workers

    def _start(self, w: _Worker) -> None:
        assert self.stats is not None
        r, wfd = os.pipe()
        spec = {
            "app": self.app_spec,
            "settings": {**self.settings.to_json(), "port": self.port},
            "index": w.index,
            "shm": self.name,
            "ready_fd": wfd,
            "parent": os.getpid(),
        }
        try:
            w.proc = subprocess.Popen(
                [sys.executable, "-m", "sente.cluster.worker", json.dumps(spec)],
                pass_fds=(wfd,),
                process_group=0,
                env=self._env,
            )
        finally:
            os.close(wfd)
        os.set_blocking(r, False)
        w.ready_fd = r
        self._selector.register(r, selectors.EVENT_READ, w)
        if w.starts:
            self.stats.count_restart(w.index)
        w.starts += 1
        w.ready = False
        w.started_at = time.monotonic()
        w.restart_at = None
        self.stats.set_pid(w.index, w.proc.pid)
        log.debug("worker %d started (pid %d)", w.index, w.proc.pid)

    def _reap(self) -> None:
        for w in self._workers:
            if w.just_exited():
                self._exited(w)

    def _exited(self, w: _Worker) -> None:
        assert w.proc is not None and self.shared is not None and self.stats is not None
        code = w.proc.returncode
        self._close_ready(w)
        self.stats.set_pid(w.index, 0)
        # the rule of csente.shm: reaped (poll() did), then reclaimed, then restarted
        uids = self.shared.reclaim_worker(w.index, force=True)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        log.warning("worker %d (pid %d) exited with %s; %d uid(s) reclaimed", w.index, w.proc.pid, how, len(uids))
        if uids:
            try:
                self.on_reclaimed(w.index, uids)
            except Exception:
                log.exception("the on_reclaimed hook failed for worker %d", w.index)
        remove_long_uids(self.shared.path, w.index)
        lived = time.monotonic() - w.started_at
        if not w.ready:
            w.failures += 1
            if w.failures >= MAX_START_FAILURES:
                self._fatal = f"worker {w.index} exited {w.failures} times before it was ready"
                log.error("%s: giving up", self._fatal)
                return
        if lived >= HEALTHY_AFTER_S and w.ready:
            w.backoff = 0.0
        else:
            w.backoff = min(BACKOFF_S[1], max(BACKOFF_S[0], 2 * w.backoff))
        w.restart_at = time.monotonic() + w.backoff
        w.proc = None

    def hand_off_uids(self, index: int, uids: list[bytes]) -> None:
        """The default ``on_reclaimed``: queue one ``uidport-close`` control message per uid (see the docstring)."""
        log.info("uids that left with worker %d: %s", index, ", ".join(repr(u) for u in uids[:20])
                 + (f" and {len(uids) - 20} more" if len(uids) > 20 else ""))
        assert self.shared is not None
        for key in uids:
            text = read_long_uid(self.shared.path, key, self.shared.workers) if key[:1] == LONG_PREFIX else None
            self._control.append((key, UIDPORT_CLOSE if text is None else UIDPORT_CLOSE + b" " + text))
        self._flush_control(fallback=index)

    def _flush_control(self, fallback: int | None = None) -> None:
        if not self._control or self.shared is None:
            return
        live = [w.index for w in self._workers if w.running]
        target = live[0] if live else fallback if fallback is not None else 0
        while self._control:
            if not self.shared.publish(target, KIND_CONTROL, *self._control[0]):
                return  # that lane is full: retried on the next turn of the loop
            self._control.popleft()

    # ------------------------------------------------------------------ stop

    def _stop(self, wake_r: int) -> int:
        if self._fatal is not None:
            self._kill_all()
            return 1
        log.info("stopping: SIGTERM to %d worker(s), %.1f s to drain", sum(w.running for w in self._workers),
                 self.settings.shutdown_timeout)
        seen = len(self._signals)
        for w in self._workers:
            w.restart_at = None
            if w.running:
                assert w.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout
        clean = True
        while any(w.running for w in self._workers):
            left = deadline - time.monotonic()
            if left <= 0 or len(self._signals) > seen:
                log.error("workers still running after %s: killing them",
                          "a second signal" if left > 0 else "the shutdown timeout")
                clean = False
                break
            self._wait(wake_r, min(left, 0.1))
            for w in self._workers:
                if w.just_exited():
                    assert w.proc is not None
                    code = w.proc.returncode
                    # a worker stopped while still starting had nothing to drain
                    code_ok = code == 0 or (not w.ready and code == -signal.SIGTERM)
                    clean = clean and code_ok
                    if not code_ok:
                        log.warning("worker %d exited with %s during the drain", w.index, code)
        self._kill_all()
        return 0 if clean else 1

    def _kill_all(self) -> None:
        for w in self._workers:
            if w.proc is not None and w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
        for w in self._workers:
            if w.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(5)

    def _cleanup(self, reserved: socket.socket | None, wake_r: int, wake_w: int) -> None:
        for w in self._workers:
            self._close_ready(w)
        self._selector.close()
        for fd in (wake_r, wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if reserved is not None:
            reserved.close()
        if self.shared is not None:
            remove_long_uids(self.shared.path)
            self.shared.unlink()
            self.shared.close()
        if self.stats is not None:
            self.stats.unlink()
            self.stats.close()
        if self.metrics is not None:
            self.metrics.unlink()
            self.metrics.close()
