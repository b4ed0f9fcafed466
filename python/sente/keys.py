"""Python ``str`` dict keys ↔ Clojure keyword keys, so Python code and ClojureScript code both read naturally.

With :class:`StrKeysPacker` (what ``ChannelSocketServer(str_keys=True)``, the default, uses):

* going out, a ``str`` dict key that reads back as a keyword becomes one: ``{"msg": "hi"}`` is sent as
  ``{:msg "hi"}``, so a ClojureScript handler reads ``(:msg data)``; ``"a/b"`` becomes ``:a/b``. Keys that
  would print as unreadable keywords (empty, with spaces, starting with ``:`` or ``#``...) stay strings.
* coming in, keyword keys become ``str``: ``{:msg "hi"}`` arrives as ``{"msg": "hi"}``, ``:a/b`` as ``"a/b"``.

Only dict keys change; values, event ids (always keywords) and keys of other types are left alone. The
mapping is lossy for a map that has both ``:msg`` and ``"msg"`` as keys; a server that must echo such
maps exactly (like the reference test app) uses ``str_keys=False`` and handles :class:`Keyword` keys itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from csente.types import FrozenDict, Keyword

from .packers import Packed, Packer

_CHAR = r"[\w*+!?<>=.\-'&%$|]"
_NAME = rf"{_CHAR}(?:{_CHAR}|[:#])*"
_KEYWORD_NAME = re.compile(rf"{_NAME}(?:/{_NAME})?")


def _key_out(key: Any) -> Any:
    if type(key) is str and _KEYWORD_NAME.fullmatch(key) and not key.endswith(":"):
        return Keyword(key)
    return key


def to_wire(value: Any) -> Any:
    """``value`` with every keyword-shaped ``str`` dict key turned into a :class:`Keyword`, recursively."""
    t = type(value)
    if t is dict or t is FrozenDict:
        return t((_key_out(k), to_wire(v)) for k, v in value.items())
    if t is list:
        return [to_wire(v) for v in value]
    if t is tuple:
        return tuple(to_wire(v) for v in value)
    return value


def from_wire(value: Any) -> Any:
    """``value`` with every :class:`Keyword` dict key turned into its ``str`` text, recursively."""
    t = type(value)
    if t is dict:
        return {(k.text if type(k) is Keyword else k): from_wire(v) for k, v in value.items()}
    if t is list:
        return [from_wire(v) for v in value]
    return value


class StrKeysPacker(Packer):
    """Wraps a packer so that Python sees ``str`` dict keys where the wire has keywords."""

    def __init__(self, inner: Packer) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.binary = inner.binary

    def pack(self, value: Any) -> Packed:
        return self.inner.pack(to_wire(value))

    def unpack(self, data: Packed) -> Any:
        return from_wire(self.inner.unpack(data))

    def encode_event(self, event: Any) -> Any:
        return self.inner.encode_event(to_wire(event))

    def pack_batch(self, encoded_events: Sequence[Any]) -> Packed:
        return self.inner.pack_batch(encoded_events)
