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
from typing import Any

from csente.types import Keyword

from .packers import PACKER_NAMES, EdnPacker, Packer, TransitPacker
from .protocol.config import ServerConfig

# ServerConfig's numeric options become flags: lp_timeout_ms -> --lp-timeout-ms
NUMERIC_OPTIONS = [f.name for f in dataclasses.fields(ServerConfig) if f.type in ("int", "int | None")]
SETTING_FLAGS = ("host", "port", "workers", "packer", "log_level", "json_logs", "shutdown_timeout", "redis_url",
                 "redis_ttl")


def _sample_messages() -> list[tuple[str, Any, Any]]:
    kw = Keyword
    return [
        ("handshake", [kw("chsk/handshake"), ["alice", None, {kw("hsdata"): "x"}]], None),
        ("reply", {kw("a"): 1, kw("b"): [1.5, "two"]}, "a1b2c3"),
        ("client event", [kw("my/ev"), {kw("x"): 1, kw("id"): uuid.UUID(int=7)}], kw("ajax")),
        ("server ping", kw("chsk/ws-ping"), None),
    ]


def roundtrip(out: Any = sys.stdout) -> int:
    """Print each sample envelope in edn and transit and check it unpacks to the same payload."""
    packers: list[Packer] = [EdnPacker(), TransitPacker()]
    failures = 0
    for label, payload, cb in _sample_messages():
        for packer in packers:
            wire = packer.pack_envelope(payload, cb)
            back = packer.unpack_envelope(wire)
            ok = back.payload == payload and back.cb_id == cb
            failures += not ok
            print(f"{label:>13} {packer.name:<7} {'ok ' if ok else 'BAD'} {wire!s}", file=out)
    batch_events = [[Keyword("test/pushed"), {Keyword("a"): i}] for i in (1, 2)]
    for packer in packers:
        wire = packer.pack_batch([packer.encode_event(e) for e in batch_events])
        print(f"{'push batch':>13} {packer.name:<7}     {wire!s}", file=out)
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
    url = f"http://{settings.host}:{{port}}"
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
                     f"{settings.workers} workers, shm {sup.name})")

    try:
        return supervisor.run(on_started=started)
    except OSError as e:
        print(f"sente: cannot listen on {settings.host}:{settings.port}: {e}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    """``sente demo``: exactly ``sente serve sente.demo:app`` (2 workers unless told), the chat page at ``/``."""
    argv = ["serve", "sente.demo:app", "--workers", args.workers]
    for flag in ("host", "port", "packer"):
        argv += [f"--{flag}", getattr(args, flag)] if getattr(args, flag) else []
    print("sente demo: open the URL below in two browser tabs (/?type=ajax forces Ajax long-polling)", flush=True)
    return main(argv)


def _bench(argv: list[str]) -> int:
    """``sente bench``: the fan-out benchmark, ``bench.fanout`` of a source checkout (bench/ is not installed)."""
    from pathlib import Path

    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "bench" / "fanout" / "__main__.py").is_file():
            sys.path.insert(0, str(root))
            from bench.fanout.__main__ import main as bench_main

            return bench_main(argv)
    print("sente bench: the benchmark lives in bench/fanout of a csente source checkout, which is not installed "
          "with the package; run it from a checkout (pip install -e '.[dev]', then sente bench or "
          "python -m bench.fanout)", file=sys.stderr)
    return 2


def _probe(args: argparse.Namespace) -> int:
    import asyncio

    from .client.probe import probe

    headers = [tuple(h.split(":", 1)) for h in args.header]
    return asyncio.run(probe(
        args.url, uid=args.uid, type=args.type, event=args.send, timeout=args.timeout, token_url=args.token_url,
        csrf_token=args.csrf_token, headers=[(k.strip(), v.strip()) for k, v in headers], trace=args.trace,
        packer=args.packer,
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
    with Publisher(url, packer=args.packer, str_keys=False, prefix=args.prefix) as pub:
        try:
            n = pub.broadcast(event) if args.broadcast else pub.send(args.uid, event)
        except ValueError as e:
            print(f"sente publish: {e}", file=sys.stderr)
            return 2
    print(f"sente publish: received by {n} node workers")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sente", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("roundtrip", help="show Sente messages in edn and transit, packed and read back")
    serve = sub.add_parser("serve", help="run a Sente app (module:factory) on one port, HTTP and WebSocket")
    serve.add_argument("app", metavar="APP", help="module:factory, e.g. sente.testapp:app")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", help="TCP port (default 8090; 0: any free port)")
    serve.add_argument("--packer", choices=PACKER_NAMES, help="wire format (default edn)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--workers", nargs="?", const="auto", metavar="N",
                       help="worker processes under a supervisor (default, or no N: one per CPU); "
                            "0: this one process serves, without supervisor or shared memory")
    serve.add_argument("--config", metavar="TOML", help="settings file (flags > SENTE_* variables > file > defaults)")
    serve.add_argument("--json-logs", action=argparse.BooleanOptionalAction, default=None,
                       help="one JSON object per log line")
    serve.add_argument("--shutdown-timeout", metavar="SECONDS", help="time to drain on SIGTERM (default 10)")
    serve.add_argument("--redis-url", metavar="URL", help="join other nodes through this Redis (redis://host:6379/0)")
    serve.add_argument("--redis-ttl", metavar="SECONDS", help="a silent node leaves presence after (default 5)")
    for name in NUMERIC_OPTIONS:
        serve.add_argument("--" + name.replace("_", "-"), default=None, metavar="N", help=f"server option {name}")
    demo = sub.add_parser("demo", help="the demo: a live chat page on sente.js (sente serve sente.demo:app)")
    demo.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    demo.add_argument("--port", help="TCP port (default 8090; 0: any free port)")
    demo.add_argument("--workers", default="2", metavar="N", help="worker processes (default 2)")
    demo.add_argument("--packer", choices=PACKER_NAMES, help="wire format (default edn)")
    probe = sub.add_parser("probe", help="connect as a Sente client, print the handshake and the wire transcript")
    probe.add_argument("url", metavar="URL", help="the Sente endpoint, e.g. http://127.0.0.1:8090/chsk")
    probe.add_argument("--uid", help="sent as the uid param (and to --token-url)")
    probe.add_argument("--type", choices=["auto", "ws", "ajax"], default="auto")
    probe.add_argument("--send", metavar="EDN", help="an event to send, e.g. '[:test/echo {:a 1}]'; prints the reply")
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds for the handshake and the reply")
    probe.add_argument("--token-url", help="GET this first: body = CSRF token, Set-Cookie = session")
    probe.add_argument("--csrf-token")
    probe.add_argument("-H", "--header", action="append", default=[], help="'Name: value', repeatable")
    probe.add_argument("--trace", action="store_true", help="also log at DEBUG level (sente.client.wire...)")
    probe.add_argument("--packer", choices=PACKER_NAMES, default="edn", help="the server's wire format")
    snap = sub.add_parser("dashboard-snapshot", help="render the Grafana dashboard's panels from Prometheus to a PNG")
    snap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    snap.add_argument("--out", default="dashboard.png", help="PNG to write (default dashboard.png)")
    snap.add_argument("--minutes", type=float, default=15.0, help="time range ending now (default 15)")
    snap.add_argument("--job", default=".*", help="job regex for the dashboard's $job (default all)")
    snap.add_argument("--dashboard", help="dashboard JSON (default grafana/dashboards/sente.json of the checkout)")
    publish = sub.add_parser("publish", help="push an event to a Redis-connected cluster, without a server")
    publish.add_argument("event", metavar="EVENT_EDN", help="e.g. '[:app/notice {:text \"hi\"}]'")
    publish.add_argument("--redis-url", metavar="URL", help="the cluster's Redis (default: SENTE_REDIS_URL)")
    publish.add_argument("--uid", help="push to this uid's clients (a string uid)")
    publish.add_argument("--broadcast", action="store_true", help="push to every connected uid")
    publish.add_argument("--packer", choices=PACKER_NAMES, default="edn", help="the cluster's wire format")
    publish.add_argument("--prefix", default="sente", help="the cluster's Redis prefix (default sente)")
    sub.add_parser("bench", add_help=False, help="the fan-out benchmark (source checkout; sente bench --help)")
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
        from .snapshot import main as snapshot_main

        return snapshot_main(args.prometheus, args.out, args.minutes, args.job, args.dashboard)
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
