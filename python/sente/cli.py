"""The ``sente`` command line.

``sente serve APP`` runs a Sente app (``module:factory``, e.g. ``sente.testapp:app``) with one flag per
server option: in one process, or with ``--workers [N]`` in N worker processes under a supervisor
(:mod:`sente.cluster.supervisor`); settings also come from ``SENTE_*`` variables and a ``--config`` TOML file
(:mod:`sente.config`). ``sente roundtrip`` shows what the packers put on the wire for Sente's own messages and
proves each reads back to the value it came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from csente.types import Keyword

from .packers import PACKER_NAMES, EdnPacker, MsgpackPacker, Packer, TransitPacker
from .protocol.config import ServerConfig

# ServerConfig's numeric options become flags: lp_timeout_ms -> --lp-timeout-ms
NUMERIC_OPTIONS = [f.name for f in dataclasses.fields(ServerConfig) if f.type in ("int", "int | None")]
SETTING_FLAGS = ("host", "port", "workers", "packer", "log_level", "json_logs", "shutdown_timeout", "redis_url",
                 "redis_ttl", "session_secret_file", "secure_cookies", "ssl_certfile", "ssl_keyfile",
                 "ssl_ca_certs")
TLS_FLAGS = ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("csente")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from . import __version__

        return __version__


def _sample_messages() -> list[tuple[str, Any, Any]]:
    kw = Keyword
    return [
        ("handshake", [kw("chsk/handshake"), ["alice", None, {kw("hsdata"): "x"}]], None),
        ("reply", {kw("a"): 1, kw("b"): [1.5, "two"]}, "a1b2c3"),
        ("client event", [kw("my/ev"), {kw("x"): 1, kw("id"): uuid.UUID(int=7)}], kw("ajax")),
        ("server ping", kw("chsk/ws-ping"), None),
    ]


def _shown(wire: str | bytes) -> str:
    return wire if isinstance(wire, str) else wire.hex(" ")


def roundtrip(out: Any = sys.stdout) -> int:
    """Print each sample envelope in edn, transit and msgpack and check it unpacks to the same payload."""
    packers: list[Packer] = [EdnPacker(), TransitPacker(), MsgpackPacker()]
    failures = 0
    for label, payload, cb in _sample_messages():
        for packer in packers:
            wire = packer.pack_envelope(payload, cb)
            back = packer.unpack_envelope(wire)
            ok = back.payload == payload and back.cb_id == cb
            failures += not ok
            print(f"{label:>13} {packer.name:<7} {'ok ' if ok else 'BAD'} {_shown(wire)}", file=out)
    batch_events = [[Keyword("test/pushed"), {Keyword("a"): i}] for i in (1, 2)]
    for packer in packers:
        wire = packer.pack_batch([packer.encode_event(e) for e in batch_events])
        print(f"{'push batch':>13} {packer.name:<7}     {_shown(wire)}", file=out)
    return 1 if failures else 0


def _serve(args: argparse.Namespace) -> int:
    """``sente serve``: a supervisor and its workers (one per CPU by default); ``--workers 0``: this one process."""
    from .app import load_app_factory
    from .cluster.worker import configure_logging, serve_app, startup_line
    from .config import ConfigError, load_settings

    flags = {name: getattr(args, name) for name in (*SETTING_FLAGS, *NUMERIC_OPTIONS)}
    try:
        settings = load_settings(flags, config_path=args.config)
    except ConfigError as e:
        print(f"sente: {e}", file=sys.stderr)
        return 2
    try:
        load_app_factory(args.app)
    except (ImportError, AttributeError, ValueError, TypeError) as e:
        print(f"sente: cannot load APP {args.app!r}: {e}", file=sys.stderr)
        return 2
    url = f"{'https' if settings.ssl_certfile else 'http'}://{settings.host}:{{port}}"
    if settings.workers == 0:
        configure_logging(settings, None)

        def announce(port: int) -> None:
            startup_line(settings, f"sente: serving {args.app} on {url.format(port=port)} (packer {settings.packer})")

        try:
            return serve_app(args.app, settings, on_bound=announce)
        except OSError as e:
            print(f"sente: cannot listen on {settings.host}:{settings.port}: {e}", file=sys.stderr)
            return 1
    from .cluster.supervisor import Supervisor

    configure_logging(settings, "supervisor")
    supervisor = Supervisor(args.app, settings)

    def started(sup: Supervisor) -> None:
        startup_line(settings, f"sente: serving {args.app} on {url.format(port=sup.port)} (packer {settings.packer}, "
                     f"{plural(settings.workers, 'worker')}, shm {sup.name})")

    try:
        return supervisor.run(on_started=started)
    except OSError as e:
        print(f"sente: cannot listen on {settings.host}:{settings.port}: {e}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    """``sente demo``: exactly ``sente serve sente.demo:app`` (2 workers unless told), the chat page at ``/``."""
    argv = ["serve", "sente.demo:app", "--workers", args.workers]
    for flag in ("host", "port", "packer", *TLS_FLAGS):
        argv += [f"--{flag.replace('_', '-')}", getattr(args, flag)] if getattr(args, flag) else []
    print("sente demo: open the URL below in two browser tabs (/?type=ajax forces Ajax long-polling)", flush=True)
    return main(argv)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _bench(argv: list[str]) -> int:
    """``sente bench``: the fan-out benchmark (:mod:`sente.bench`)."""
    from .bench.run import main as bench_main

    return bench_main(argv)


def _probe(args: argparse.Namespace) -> int:
    import asyncio

    from . import edn
    from .client.probe import probe, ssl_option

    if args.send is not None:
        try:
            edn.loads(args.send)
        except ValueError as e:
            print(f"sente probe: --send is not readable EDN: {e}", file=sys.stderr)
            return 2
    if any(":" not in h for h in args.header):
        print("sente probe: --header takes 'Name: value'", file=sys.stderr)
        return 2
    headers = [tuple(h.split(":", 1)) for h in args.header]
    return asyncio.run(probe(
        args.url, uid=args.uid, type=args.type, event=args.send, timeout=args.timeout, token_url=args.token_url,
        csrf_token=args.csrf_token, headers=[(k.strip(), v.strip()) for k, v in headers], trace=args.trace,
        packer=args.packer, ssl=ssl_option(args.cafile, args.insecure),
    ))


def _publish(args: argparse.Namespace) -> int:
    """``sente publish``: one push to a Redis-connected cluster (:class:`sente.Publisher`), no server needed."""
    import os

    from . import edn
    from .publisher import Publisher

    url = args.redis_url or os.environ.get("SENTE_REDIS_URL")
    if not url:
        print("sente publish: --redis-url (or SENTE_REDIS_URL) is required", file=sys.stderr)
        return 2
    if (args.uid is None) == (not args.broadcast):
        print("sente publish: give --uid U or --broadcast (one of them)", file=sys.stderr)
        return 2
    try:
        event = edn.loads(args.event)
    except ValueError as e:
        print(f"sente publish: EVENT_EDN is not EDN: {e}", file=sys.stderr)
        return 2
    from redis.exceptions import RedisError

    try:
        with Publisher(url, packer=args.packer, str_keys=False, prefix=args.prefix) as pub:
            n = pub.broadcast(event) if args.broadcast else pub.send(args.uid, event)
    except ValueError as e:
        print(f"sente publish: {e}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as e:
        print(f"sente publish: cannot reach Redis at {url}: {e}", file=sys.stderr)
        return 2
    print(f"sente publish: received by {n} node workers")
    return 0


def _tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ssl-certfile", metavar="PEM",
                        help="serve https and wss on the port with this certificate (chain) (default: none, "
                             "plain http and ws)")
    parser.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key (if not in --ssl-certfile)")
    parser.add_argument("--ssl-ca-certs", metavar="PEM", help="CA certificates to verify client certificates with")


def _snapshot(args: argparse.Namespace) -> int:
    """``sente dashboard-snapshot``: the dashboard's panels from a Prometheus, as a PNG."""
    import urllib.error

    from .snapshot import DASHBOARD
    from .snapshot import main as snapshot_main

    try:
        import matplotlib  # noqa: F401 (drawn with; checked before querying anything)
    except ImportError:
        print("sente dashboard-snapshot: needs matplotlib: pip install 'csente[snapshot]'", file=sys.stderr)
        return 2
    dashboard = args.dashboard or DASHBOARD
    if not Path(dashboard).is_file():
        print(f"sente dashboard-snapshot: no dashboard at {dashboard}: pass --dashboard PATH (grafana/dashboards/"
              "sente.json of a csente checkout)", file=sys.stderr)
        return 2
    try:
        return snapshot_main(args.prometheus, args.out, args.minutes, args.job, str(dashboard))
    except (urllib.error.URLError, OSError) as e:
        print(f"sente dashboard-snapshot: cannot query Prometheus at {args.prometheus}: {e}", file=sys.stderr)
        return 2


DESCRIPTION = """\
csente: Sente's realtime channel sockets for Python (WebSocket with Ajax long-poll fallback), wire-compatible
with Clojure's Sente. Without a command, prints what the packers put on the wire for Sente's own messages and
checks that each reads back (the same as 'sente roundtrip').
"""
SERVE_DESCRIPTION = """\
Run a Sente app on one port, HTTP and WebSocket. APP is module:factory, where factory(packer=..., **options)
returns a sente.app.SenteApp (see the README's 'The server'). With --workers N (the default: one per CPU) a
supervisor runs N worker processes sharing the port and a shared-memory uid registry; --workers 0 serves from
this one process. Settings: flags > SENTE_* environment variables > --config TOML file > defaults.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=110)


def _option_help(name: str) -> str:
    """Help for a server option flag: Sente's name for it, its unit and its default."""
    field = next(f for f in dataclasses.fields(ServerConfig) if f.name == name)
    unit = " (ms)" if name.endswith("_ms") or name.startswith("ms_") else " (bytes)" if name.endswith("_bytes") else ""
    return f"server option {name}{unit} (default: {field.default})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sente", description=DESCRIPTION, formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"sente (csente) {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of these (sente COMMAND --help)")
    sub.add_parser("roundtrip", help="show Sente messages in edn, transit and msgpack, packed and read back",
                   formatter_class=_formatter)
    serve = sub.add_parser("serve", help="run a Sente app (module:factory) on one port, HTTP and WebSocket",
                           description=SERVE_DESCRIPTION, formatter_class=_formatter)
    serve.add_argument("app", metavar="APP", help="module:factory, e.g. sente.testapp:app")
    serve.add_argument("--host", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", help="TCP port; 0: any free port (default: 8090)")
    serve.add_argument("--packer", choices=PACKER_NAMES, help="wire format (default: edn)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                       help="log threshold (default: info)")
    serve.add_argument("--workers", nargs="?", const="auto", metavar="N",
                       help="worker processes under a supervisor; no N: one per CPU; 0: this one process serves, "
                            "without supervisor or shared memory (default: one per CPU)")
    serve.add_argument("--config", metavar="TOML", help="settings file (flags > SENTE_* variables > file > defaults)")
    serve.add_argument("--json-logs", action=argparse.BooleanOptionalAction, default=None,
                       help="one JSON object per log line (default: plain text)")
    serve.add_argument("--shutdown-timeout", metavar="SECONDS", help="time to drain on SIGTERM (default: 10)")
    serve.add_argument("--redis-url", metavar="URL", help="join other nodes through this Redis, e.g. "
                       "redis://127.0.0.1:6379/0 (default: none, this node alone)")
    serve.add_argument("--redis-ttl", metavar="SECONDS", help="a silent node leaves presence after this long "
                       "(default: 5)")
    serve.add_argument("--session-secret-file", metavar="PATH",
                       help="secret for signed session cookies, created once if missing "
                            "(default: $XDG_STATE_HOME/sente/session-secret; SENTE_SESSION_SECRET wins)")
    serve.add_argument("--secure-cookies", action=argparse.BooleanOptionalAction, default=None,
                       help="mark session cookies Secure (default: on under TLS)")
    _tls_flags(serve)
    for name in NUMERIC_OPTIONS:
        serve.add_argument("--" + name.replace("_", "-"), default=None, metavar="N", help=_option_help(name))
    demo = sub.add_parser("demo", help="the demo: a live chat page on sente.js (sente serve sente.demo:app)",
                          formatter_class=_formatter)
    demo.add_argument("--host", help="interface to listen on (default: 127.0.0.1)")
    demo.add_argument("--port", help="TCP port; 0: any free port (default: 8090)")
    demo.add_argument("--workers", default="2", metavar="N", help="worker processes (default: %(default)s)")
    demo.add_argument("--packer", choices=PACKER_NAMES, help="wire format (default: edn)")
    _tls_flags(demo)
    probe = sub.add_parser("probe", help="connect as a Sente client, print the handshake and the wire transcript",
                           formatter_class=_formatter)
    probe.add_argument("url", metavar="URL", help="the Sente endpoint, e.g. http://127.0.0.1:8090/chsk")
    probe.add_argument("--uid", help="sent as the uid param (and to --token-url) (default: none)")
    probe.add_argument("--type", choices=["auto", "ws", "ajax"], default="auto",
                       help="transport: WebSocket with Ajax fallback, or only one (default: %(default)s)")
    probe.add_argument("--send", metavar="EDN", help="an event to send, e.g. '[:test/echo {:a 1}]'; prints the reply")
    probe.add_argument("--timeout", type=float, default=5.0,
                       help="seconds for the handshake and the reply (default: %(default)s)")
    probe.add_argument("--token-url", help="GET this first: body = CSRF token, Set-Cookie = session")
    probe.add_argument("--csrf-token", help="the CSRF token to present (default: none, or from --token-url)")
    probe.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                       help="an extra request header, repeatable")
    probe.add_argument("--trace", action="store_true", help="also log at DEBUG level (sente.client.wire...)")
    probe.add_argument("--packer", choices=PACKER_NAMES, default="edn", help="the server's wire format "
                       "(default: %(default)s)")
    probe.add_argument("--cafile", metavar="PEM", help="trust the CA certificate(s) in this file (https/wss)")
    probe.add_argument("--insecure", action="store_true", help="do not verify the server's certificate (https/wss)")
    snap = sub.add_parser("dashboard-snapshot", help="render the Grafana dashboard's panels from Prometheus to a PNG",
                          formatter_class=_formatter)
    snap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL (default: "
                      "%(default)s)")
    snap.add_argument("--out", default="dashboard.png", help="PNG to write (default: %(default)s)")
    snap.add_argument("--minutes", type=float, default=15.0, help="time range ending now (default: %(default)s)")
    snap.add_argument("--job", default=".*", help="job regex for the dashboard's $job (default: all jobs)")
    snap.add_argument("--dashboard", help="dashboard JSON (default: grafana/dashboards/sente.json of the checkout)")
    publish = sub.add_parser("publish", help="push an event to a Redis-connected cluster, without a server",
                             formatter_class=_formatter)
    publish.add_argument("event", metavar="EVENT_EDN", help="e.g. '[:app/notice {:text \"hi\"}]'")
    publish.add_argument("--redis-url", metavar="URL", help="the cluster's Redis (default: SENTE_REDIS_URL)")
    publish.add_argument("--uid", help="push to this uid's clients (a string uid)")
    publish.add_argument("--broadcast", action="store_true", help="push to every connected uid")
    publish.add_argument("--packer", choices=PACKER_NAMES, default="edn",
                         help="the cluster's wire format (default: %(default)s)")
    publish.add_argument("--prefix", default="sente", help="the cluster's Redis prefix (default: %(default)s)")
    sub.add_parser("bench", add_help=False, help="the fan-out benchmark: csente side by side with other servers, "
                   "or any running Sente server (sente bench --help)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command in (None, "roundtrip"):
        return roundtrip()
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "probe":
        return _probe(args)
    if args.command == "publish":
        return _publish(args)
    if args.command == "dashboard-snapshot":
        return _snapshot(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
