"""Packers: how Sente values become wire messages, and the ``[payload cb-id-or-nil]`` envelope around them.

A packer's output type decides the frame type: ``str`` goes out as a WebSocket text frame (or an Ajax
``ppstr`` field), ``bytes`` as a binary frame. Both peers must use the same packer; nothing on the wire
says which one is in use (protocol.md §1.6).

Pushes are batched: an event is encoded once with :meth:`Packer.encode_event`, and
:meth:`Packer.pack_batch` assembles the envelope for any number of encoded events, so a broadcast to N
connections costs one encoding per event and one assembly per flush, not one per recipient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

from csente import edn, transit
from csente.types import DecodeError, List

Packed = str | bytes


class Envelope(NamedTuple):
    """One unpacked message: the payload and the callback slot (None when no reply is wanted)."""

    payload: Any
    cb_id: Any


class Packer(ABC):
    """Packs values to wire messages and back; subclasses fix the format."""

    name: ClassVar[str]
    binary: bool

    @abstractmethod
    def pack(self, value: Any) -> Packed:
        """Encode one value as one wire message."""

    @abstractmethod
    def unpack(self, data: Packed) -> Any:
        """Decode one wire message; raises :class:`DecodeError` on anything unreadable."""

    @abstractmethod
    def encode_event(self, event: Any) -> Any:
        """Encode an event for later batching; the result is opaque and may be reused for many batches."""

    @abstractmethod
    def pack_batch(self, encoded_events: Sequence[Any]) -> Packed:
        """The envelope ``[[ev1 ev2 ...] nil]`` for events returned by :meth:`encode_event`."""

    def pack_envelope(self, payload: Any, cb_id: Any = None) -> Packed:
        """``[payload cb-id-or-nil]``: writers always write both elements."""
        return self.pack([payload, cb_id])

    def unpack_envelope(self, data: Packed) -> Envelope:
        """Read an envelope as Sente does: positionally, so ``[payload]`` and longer vectors are accepted."""
        value = self.unpack(data)
        if type(value) is list or isinstance(value, (tuple, List)):
            return Envelope(value[0] if len(value) > 0 else None, value[1] if len(value) > 1 else None)
        raise DecodeError(f"envelope must be a vector, got {type(value).__name__}")


class EdnPacker(Packer):
    """Sente's default packer: edn text, as Clojure's ``pr-str`` writes it and tools.reader reads it."""

    name = "edn"
    binary = False

    def __init__(
        self,
        *,
        tag_readers: Mapping[str, Callable[[Any], Any]] | None = None,
        default_tag_reader: Callable[[str, Any], Any] | None = None,
        writers: Mapping[type, Callable[[Any], tuple[str, Any]]] | None = None,
    ) -> None:
        self._tag_readers = tag_readers
        self._default = default_tag_reader
        self._writers = writers

    def pack(self, value: Any) -> str:
        return edn.dumps(value, writers=self._writers, wire=True)

    def unpack(self, data: Packed) -> Any:
        if not isinstance(data, str):
            # Sente's edn packer refuses byte[] (binary frames); so do we.
            raise DecodeError("the edn packer reads text, got binary data")
        return edn.loads(data, tag_readers=self._tag_readers, default=self._default)

    def encode_event(self, event: Any) -> str:
        return edn.dumps(event, writers=self._writers, wire=True)

    def pack_batch(self, encoded_events: Sequence[Any]) -> str:
        # edn is context-free: the batch is the encoded events joined inside the envelope.
        return "[[" + " ".join(encoded_events) + "] nil]"


class TransitPacker(Packer):
    """Sente's transit packer: transit-json (default), json-verbose, or transit over MessagePack (binary)."""

    name = "transit"

    def __init__(
        self,
        format: Literal["json", "json-verbose", "msgpack"] = "json",
        *,
        read_handlers: Mapping[str, Callable[[Any], Any]] | None = None,
        write_handlers: Mapping[type, transit.WriteHandler] | None = None,
    ) -> None:
        if format not in ("json", "json-verbose", "msgpack"):
            raise ValueError(f"unknown transit format {format!r}")
        self.format = format
        self.binary = format == "msgpack"
        self._read_handlers = read_handlers
        self._write_handlers = write_handlers

    def pack(self, value: Any) -> Packed:
        if self.format == "msgpack":
            return transit.dumps_msgpack(value, handlers=self._write_handlers)
        return transit.dumps(value, verbose=self.format == "json-verbose", handlers=self._write_handlers)

    def unpack(self, data: Packed) -> Any:
        if self.format == "msgpack":
            if isinstance(data, str):
                raise DecodeError("the msgpack transit packer reads binary data, got text")
            return transit.loads_msgpack(data, handlers=self._read_handlers)
        return transit.loads(data, handlers=self._read_handlers)

    def encode_event(self, event: Any) -> Any:
        # transit's cache codes span a whole message, so events are encoded with their batch.
        return event

    def pack_batch(self, encoded_events: Sequence[Any]) -> Packed:
        return self.pack([list(encoded_events), None])


def get_packer(packer: str | Packer = "edn") -> Packer:
    """A packer by Sente's name (``"edn"``, ``"transit"``) or the instance itself."""
    if isinstance(packer, Packer):
        return packer
    if packer == "edn":
        return EdnPacker()
    if packer == "transit":
        return TransitPacker()
    raise ValueError(f"unknown packer {packer!r}: expected 'edn', 'transit' or a Packer instance")
