"""The ``sente`` command line.

Until the server lands, ``sente roundtrip`` (the default) shows what the packers put on the wire for
Sente's own messages and proves each reads back to the value it came from.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from csente.types import Keyword

from .packers import EdnPacker, Packer, TransitPacker


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sente", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("roundtrip", help="show Sente messages in edn and transit, packed and read back")
    args = parser.parse_args(argv)
    if args.command in (None, "roundtrip"):
        return roundtrip()
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
