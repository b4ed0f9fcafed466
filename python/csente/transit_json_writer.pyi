"""Transit-json and json-verbose writing (see transit_json_writer.pyx); the public face is csente.transit."""

from collections.abc import Mapping
from typing import Any

from csente.transit_rules import WriteHandler

def dumps(value: Any, *, verbose: bool = False, handlers: Mapping[type, WriteHandler] | None = None) -> str: ...
