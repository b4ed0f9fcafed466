"""Run a Sente app on uvicorn: HTTP (Ajax and the app's routes) and picows WebSockets on one port.

:func:`uvicorn_config` is the uvicorn setup (httptools for HTTP, our picows bridge in the ``ws`` slot).
What ``sente serve`` adds around it, in one process or in each worker of the supervisor:

* :func:`bind_socket`: the process binds its listening socket itself, with ``SO_REUSEPORT`` in a worker, so
  every worker listens on the same host:port and the kernel spreads new connections over them;
* :func:`~sente.ops.health_routes`: ``GET /healthz`` and ``GET /readyz`` (:mod:`sente.ops`), answered before
  the app's routes, like ``GET /metrics``;
* :class:`DrainingServer`: on SIGTERM or SIGINT it stops accepting, turns ``/readyz`` to 503, settles the Sente
  server with the rest of the broker (:meth:`~sente.server.ChannelSocketServer.settle`: every worker flushes, then
  delivers what the others flushed to it, until all have; at most :data:`SETTLE_TIMEOUT_S`), drains it
  (:meth:`~sente.server.ChannelSocketServer.drain`: buffers flushed, held long-polls answered with
  ``[:chsk/timeout nil]``, WebSockets closed with 1012 so clients reconnect elsewhere) and then lets uvicorn
  finish the open connections within the shutdown timeout. It does not re-raise the signal: a clean drain
  exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, cast

import uvicorn

from .app import SenteApp
from .metrics import SenteCollector, metrics_route
from .ops import Health as Health  # /healthz and /readyz live with the other ops endpoints
from .ops import health_routes as health_routes
from .protocol.ratelog import RateLimitedLog
from .protocol.stats import counters
from .server import AsgiApp
from .transport.http import HeadLimits, make_http_protocol_class
from .transport.sockets import bind_socket as bind_socket  # its old home: the listening socket is transport's
from .transport.websocket import make_ws_protocol_class

log = logging.getLogger("sente.serve")
_refusals = RateLimitedLog(log)

DRAIN_CLOSE_CODE = 1012
"""WebSocket close code on shutdown: 1012, service restart (Sente clients reconnect)."""
SETTLE_TIMEOUT_S = 1.0
"""At most this long, a draining worker waits for the broker's other workers to flush what they accepted to it."""


def uvicorn_config(
    app: SenteApp,
    host: str = "127.0.0.1",
    port: int = 8090,
    log_level: str = "info",
    *,
    asgi: AsgiApp | None = None,
    log_config: Any = uvicorn.config.LOGGING_CONFIG,
    timeout_graceful_shutdown: float | None = None,
    tls: Tls | None = None,
) -> uvicorn.Config:
    """uvicorn settings for ``app``: httptools with the request-head limits of ``app.server.config``
    (:mod:`sente.transport.http`) for HTTP, our picows bridge in the ``ws`` slot.

    ``asgi`` replaces ``app.asgi`` for HTTP (e.g. wrapped in :func:`health_routes`); ``log_config=None`` leaves
    logging as the caller set it up. With ``tls``, the port speaks https and wss only. A server whose sessions are
    the host framework's (:class:`~sente.sessions.HostSessions`) gets its WebSockets through ASGI (uvicorn's own
    implementation) instead of the bridge, so the framework's session middleware runs for them too.
    """
    options = app.server.config
    ws_protocol: Any = make_ws_protocol_class(lambda: app.server, max_message_size=options.max_ws_message_bytes)
    head_timeout = options.head_timeout_ms / 1000 if options.head_timeout_ms is not None else None
    body_timeout = options.body_timeout_ms / 1000 if options.body_timeout_ms is not None else None
    http_protocol = make_http_protocol_class(
        HeadLimits(options.max_head_bytes, options.max_header_count, head_timeout, _head_refused,
                   body_timeout=body_timeout)
    )
    if app.server.host_sessions:
        ws_protocol = "auto"
    tls = tls or Tls()
    loop = "uvloop" if _has_uvloop() else "asyncio"
    return uvicorn.Config(
        asgi if asgi is not None else app.asgi,
        host=host,
        port=port,
        ws=cast(Any, ws_protocol),  # uvicorn's annotation wants asyncio.Protocol; a BufferedProtocol works
        http=cast(Any, http_protocol),  # uvicorn's annotation wants its own protocol classes; a subclass works
        loop=loop,
        lifespan="on",
        log_level=log_level,
        log_config=log_config,
        timeout_graceful_shutdown=cast(Any, timeout_graceful_shutdown),  # annotated int; a float works
        ssl_certfile=tls.certfile,
        ssl_keyfile=tls.keyfile,
        ssl_ca_certs=tls.ca_certs,
    )


def _head_refused(reason: str) -> None:
    """A request head refused by :mod:`sente.transport.http`: counted, and one rate-limited line."""
    counters().count_rejection(reason)
    _refusals.warning(reason, "refused a request head: %s", reason.replace("_", " "))


def run(app: SenteApp, host: str = "127.0.0.1", port: int = 8090, log_level: str = "info") -> None:
    """Serve until interrupted (plain uvicorn, no health routes or drain: see :func:`serve_forever`)."""
    server = uvicorn.Server(uvicorn_config(app, host, port, log_level))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


@dataclass(frozen=True)
class Tls:
    """Serve https/wss on the port: a PEM certificate (chain), its key (None: in the certificate file) and,
    to ask clients for certificates, the CAs to verify them with (uvicorn's ``--ssl-*`` options)."""

    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None


# ---------------------------------------------------------------------- uvicorn with a drain


class DrainingServer(uvicorn.Server):
    """uvicorn's server with Sente's drain in front of its shutdown, and no re-raised signal afterwards."""

    def __init__(self, config: uvicorn.Config, app: SenteApp, health: Health,
                 on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.sente_app = app
        self.health = health
        self.on_ready = on_ready

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        server = self.sente_app.server
        if self.started and not server.started:
            log.warning("the ASGI lifespan did not reach the Sente server at %s (mounted inside an app that keeps "
                        "the lifespan to itself?): starting its router and its backplane to the other workers now; "
                        "pass chsk.lifespan to the framework (FastAPI(lifespan=chsk.lifespan))", server.path)
            server.start()
        if self.started:
            self.health.ready = True
            if self.on_ready is not None:
                self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.health.draining = True
        for server in self.servers:
            server.close()  # stop accepting before the drain, so nothing new arrives after it
        try:
            await self.sente_app.server.settle(SETTLE_TIMEOUT_S)
            self.sente_app.server.drain(DRAIN_CLOSE_CODE)
        except Exception:
            log.exception("draining the Sente server failed")
        await super().shutdown(sockets)


def serve_forever(
    app: SenteApp,
    sock: socket.socket,
    health: Health,
    *,
    log_level: str = "info",
    shutdown_timeout: float = 10.0,
    on_ready: Callable[[], None] | None = None,
    metrics: SenteCollector | None = None,
    tls: Tls | None = None,
) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGTERM/SIGINT, then drain (see :class:`DrainingServer`).

    ``GET /metrics`` answers ``metrics``' exposition (default: this process's counters), before the app's routes.

    Logging is the caller's to set up. Open connections get ``shutdown_timeout`` minus a second (for the
    lifespan shutdown and the exit) to finish after the drain; what is left is cancelled.
    """
    host, port = sock.getsockname()[:2]
    config = uvicorn_config(
        app, host, port, log_level, asgi=health_routes(metrics_route(app.asgi, metrics), health), log_config=None,
        timeout_graceful_shutdown=max(0.1, shutdown_timeout - 1.0), tls=tls,
    )
    DrainingServer(config, app, health, on_ready).run(sockets=[sock])


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
