"""One serving process: the app on uvicorn + picows, on a socket it binds itself; alone or as a supervisor's worker.

A worker is started by :mod:`sente.cluster.supervisor` as ``python -m sente.cluster.worker SPEC`` (SPEC: one JSON
object, see :func:`main`). In order, it:

1. asks the kernel for SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``), so no worker outlives it;
2. attaches to the supervisor's shared memory with its index (:meth:`csente.shm.SharedState.attach`) and makes
   that visible to the app through :func:`current`;
3. imports APP and calls the factory with the settings' packer and ServerConfig options;
4. binds host:port itself with ``SO_REUSEPORT`` (the kernel spreads new connections over the workers);
5. serves with ``/healthz`` and ``/readyz`` in front (:mod:`sente.serve`), and tells the supervisor it is ready
   (one byte on an inherited pipe);
6. on SIGTERM/SIGINT drains (WebSockets closed with 1012, held polls answered) and exits 0.

``sente serve`` without ``--workers`` runs the same code in its own process (:func:`serve_app` with no index):
no shared memory, ``current()`` is None, no ``SO_REUSEPORT``.

App code gets the worker's shared state with :func:`current`, e.g. in its factory::

    from sente.cluster.worker import current

    def app(packer="edn", **options):
        ctx = current()  # None when one process serves alone
        backplane = ShmBackplane(ctx.shared) if ctx is not None else None
        ...

Logging (:func:`configure_logging`): one line per record on stderr, plain text naming the worker index and pid,
or with ``json_logs`` one JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``worker`` (index, or null), ``pid`` (and ``exc`` with a traceback).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import itertools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from csente.shm import SharedState

from .. import sessions
from ..app import load_app_factory
from ..config import Settings, settings_from_json
from ..metrics import MetricsBlock, Publisher, SenteCollector
from ..protocol.backplane import Backplane, LocalBackplane
from ..serve import Health, Tls, serve_forever
from ..server import ChannelSocketServer
from ..transport.sockets import bind_socket
from .backplane import ShmBackplane
from .supervisor import ClusterStats

log = logging.getLogger("sente.cluster.worker")


class WorkerContext(NamedTuple):
    """This process as a worker of the supervisor: its index and its attachment to the shared segment."""

    worker_index: int
    shared: SharedState


_current: WorkerContext | None = None


def current() -> WorkerContext | None:
    """``(worker_index, shared_state)`` in a worker started by the supervisor; None when one process serves alone.

    Set before the app factory is called, so the factory can pass ``shared`` on (e.g. to a backplane). The
    worker owns the attachment: app code must not close it.
    """
    return _current


# ---------------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, worker, pid (and exc)."""

    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker": self.worker,
            "pid": record.process,
        }
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09} | {0x0A: "\\n", 0x0D: "\\r"}


class LineFormatter(logging.Formatter):
    """Plain text, one line per record: control characters in the message are escaped (``\\n``, ``\\x1b``), so
    client-controlled text in a message (a client-id with a newline) cannot forge a log line or a terminal
    sequence. A traceback, when there is one, follows on its own lines as usual."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_CONTROL)


def configure_logging(settings: Settings, worker: int | str | None) -> None:
    """Root logging for this process, uvicorn's loggers included (see the module docstring).

    ``worker`` is the index, "supervisor", or None for a process serving alone.
    """
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_logs:
        handler.setFormatter(JsonFormatter(worker if isinstance(worker, int) else None))
    else:
        who = f"worker {worker}" if isinstance(worker, int) else worker or "sente"
        fmt = f"%(asctime)s %(levelname)s [{who} pid %(process)d] %(name)s: %(message)s"
        handler.setFormatter(LineFormatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True


def startup_line(settings: Settings, text: str) -> None:
    """The one line ``sente serve`` prints on stdout when it starts (a JSON object with ``json_logs``)."""
    if settings.json_logs:
        record = logging.LogRecord("sente", logging.INFO, __file__, 0, text, None, None)
        print(JsonFormatter(None).format(record), flush=True)
    else:
        print(text, flush=True)


# ---------------------------------------------------------------------- serving


def serve_app(
    app_spec: str,
    settings: Settings,
    *,
    index: int | None = None,
    shm_name: str | None = None,
    ready_fd: int | None = None,
    on_bound: Callable[[int], None] | None = None,
) -> int:
    """Build APP and serve it until SIGTERM/SIGINT; the process's exit status.

    With ``index`` and ``shm_name`` (a supervised worker) it attaches to the shared segment first and binds with
    ``SO_REUSEPORT``; ``ready_fd`` gets one byte once the server listens, and is closed. ``on_bound`` gets the
    port once the socket is bound (before the server starts).
    """
    global _current
    health = Health(worker=index)
    sessions.SECURE_DEFAULT = settings.cookies_secure
    if index is None:  # a supervisor resolved it for its workers
        sessions.resolve_secret(settings.session_secret_file)
    shared: SharedState | None = None
    block: MetricsBlock | None = None
    publisher: Publisher | None = None
    collector = SenteCollector()
    try:
        if index is not None and shm_name is not None:
            shared = SharedState.attach(shm_name, index)
            block = MetricsBlock.attach(shm_name)
            publisher = Publisher(block, index)  # continues this index's counters after a restart
            collector = SenteCollector(shm_name, shared, publisher=publisher, attach_stats=ClusterStats.attach)
            _current = WorkerContext(index, shared)
            attached = shared
            # Every ChannelSocketServer the app builds joins the broker: presence and pushes cross workers.
            ChannelSocketServer.backplane_factory = lambda: ShmBackplane(attached)
        if settings.redis_url is not None:  # ...and the other nodes, through Redis
            ChannelSocketServer.backplane_factory = _redis_factory(settings, index, shm_name)
        factory = load_app_factory(app_spec)
        app = factory(packer=settings.packer, **settings.server_options)
        _freeze_startup_objects()
        sock = bind_socket(settings.host, settings.port, reuse_port=index is not None)
        if on_bound is not None:
            on_bound(sock.getsockname()[1])

        def ready() -> None:
            log.info("serving on %s:%d", *sock.getsockname()[:2])
            if publisher is not None:
                publisher.start()
            if ready_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(ready_fd, b"R")
                    os.close(ready_fd)

        serve_forever(app, sock, health, log_level=settings.log_level, shutdown_timeout=settings.shutdown_timeout,
                      on_ready=ready, metrics=collector,
                      tls=Tls(settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_ca_certs))
        return 0
    finally:
        if publisher is not None:
            publisher.stop()
        if block is not None:
            collector.close()
            block.close()
        _current = None
        ChannelSocketServer.backplane_factory = None
        sessions.SECURE_DEFAULT = False
        if shared is not None:
            shared.close()


def _freeze_startup_objects() -> None:
    """Collect once, then leave every object alive now (modules, classes, the app: ~35k, kept for the life of the
    process) out of the collector's later passes (``gc.freeze``). A full collection then walks only what came after,
    the connections' objects: with 1,000 WebSocket clients it went from a median 153 ms to 67 ms on this 2-core
    machine under load, a pause every push waiting on the loop would sit through."""
    gc.collect()
    gc.freeze()


def _redis_factory(settings: Settings, index: int | None, shm_name: str | None) -> Callable[[], Backplane]:
    """Backplanes of this worker's servers joined to the other nodes: this node's (shared memory, or this
    process alone) composed with a :class:`RedisLink`. Member ids are stable across a worker's restarts
    (``<node>|<index>``), so a replacement's registration closes what its predecessor left."""
    from .composite import CompositeBackplane
    from .redis import RedisLink, default_node_id

    assert settings.redis_url is not None
    node = default_node_id(shm_name)
    made = itertools.count()
    local_factory = ChannelSocketServer.backplane_factory

    def make() -> Backplane:
        n = next(made)
        member = f"{node}|{index or 0}" + (f".{n}" if n else "")
        local = local_factory() if local_factory is not None else LocalBackplane()
        link = RedisLink(settings.redis_url or "", node=node, member=member, ttl_s=settings.redis_ttl,
                         heartbeat_s=settings.redis_ttl / 5)
        return CompositeBackplane(local, link)

    return make


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux); exit now if the parent is gone already."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(1)


def _stop_before_serving(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sente.cluster.worker SPEC``; SPEC is a JSON object with ``app`` (module:factory), ``settings``
    (:meth:`Settings.to_json`), ``index``, ``shm`` (the segment's name), ``ready_fd`` (inherited pipe, or null)
    and ``parent`` (the supervisor's pid)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m sente.cluster.worker SPEC-JSON (started by the supervisor)", file=sys.stderr)
        return 2
    # A stop that arrives while the app is still loading has nothing to drain: exit cleanly (status 0). The
    # server replaces these handlers with its draining ones once it runs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_before_serving)
    spec = json.loads(args[0])
    settings = settings_from_json(spec["settings"])
    index = int(spec["index"])
    configure_logging(settings, index)
    if spec.get("parent"):
        _die_with_parent(int(spec["parent"]))
    try:
        return serve_app(spec["app"], settings, index=index, shm_name=spec["shm"], ready_fd=spec.get("ready_fd"))
    except SystemExit:
        raise
    except BaseException:
        log.exception("worker %d failed", index)
        return 1


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: app code imports sente.cluster.worker, and
    # current() must answer from the module it imports.
    from sente.cluster import worker

    sys.exit(worker.main())
