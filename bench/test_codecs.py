"""Encode/decode benchmarks: csente edn, transit and msgpack against edn_format, transit-python2 and msgspec.

msgspec.json is the ceiling of the text codecs, msgspec.msgpack (plain MessagePack, no ext types or key
cache, keywords as strings) the ceiling of csente.msgpack.

Run: python3 -m pytest bench/test_codecs.py --benchmark-json=bench/results/codecs.json
then: python3 -m bench.report bench/results/codecs.json   (table of medians and ratios, for the README)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import edn_format
import msgspec
import pytest
from transit.reader import Reader as TransitReader
from transit.transit_types import Keyword as TransitPyKeyword
from transit.writer import Writer as TransitWriter

from bench.payloads import batch, event
from sente import edn, msgpack, transit
from sente.edn import Keyword

SHAPES: dict[str, Callable[[Callable[[str], Any]], Any]] = {
    "event": lambda kw: event(0, kw),
    "batch100": batch,
}


def _transit_py_dumps(value: Any) -> str:
    out = io.StringIO()
    TransitWriter(out, "json").write(value)
    return out.getvalue()


def _transit_py_loads(text: str) -> Any:
    return TransitReader("json").read(io.StringIO(text))


# library -> (keyword constructor, encode, decode)
CODECS: dict[str, tuple[Callable[[str], Any], Callable[[Any], Any], Callable[[Any], Any]]] = {
    "msgspec.json": (str, msgspec.json.encode, msgspec.json.decode),
    "msgspec.msgpack": (str, msgspec.msgpack.encode, msgspec.msgpack.decode),
    "csente.msgpack": (Keyword, msgpack.dumps, msgpack.loads),
    "csente.edn": (Keyword, edn.dumps, edn.loads),
    "csente.transit": (Keyword, transit.dumps, transit.loads),
    "edn_format": (edn_format.Keyword, edn_format.dumps, edn_format.loads),
    "transit-python2": (TransitPyKeyword, _transit_py_dumps, _transit_py_loads),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("library", CODECS)
def test_encode(benchmark: Any, library: str, shape: str) -> None:
    kw, encode, _ = CODECS[library]
    value = SHAPES[shape](kw)
    benchmark.group = f"encode {shape}"
    benchmark(encode, value)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("library", CODECS)
def test_decode(benchmark: Any, library: str, shape: str) -> None:
    kw, encode, decode = CODECS[library]
    data = encode(SHAPES[shape](kw))
    benchmark.group = f"decode {shape}"
    benchmark(decode, data)
