"""Packers: how Sente values become wire messages, and the ``[payload cb-id-or-nil]`` envelope around them.

A packer's output type decides the frame type: ``str`` goes out as a WebSocket text frame (or an Ajax
``ppstr`` field), ``bytes`` as a binary frame. Both peers must use the same packer; nothing on the wire
says which one is in use (protocol.md §1.6).

Pushes are batched: an event is encoded once with :meth:`Packer.encode_event`, and
:meth:`Packer.pack_batch` assembles the envelope for any number of encoded events, so a broadcast to N
connections costs one encoding per event and one assembly per flush, not one per recipient.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

from csente import edn, msgpack, transit
from csente.types import DecodeError, List

Packed = str | bytes

PACKER_NAMES = ("edn", "transit", "msgpack", "edn+gzip", "transit+gzip", "msgpack+gzip")
"""The names :func:`get_packer` (and every ``--packer`` flag) accepts: Sente's packers, bare or gzip-wrapped."""


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


class MsgpackPacker(Packer):
    """Sente's msgpack packer (1.21+): binary, with Sente's ext types and a map-key cache per message."""

    name = "msgpack"
    binary = True

    def pack(self, value: Any) -> bytes:
        return msgpack.dumps(value)

    def unpack(self, data: Packed) -> Any:
        if isinstance(data, str):
            # Sente's msgpack packer takes byte[] only (a text frame fails); so do we.
            raise DecodeError("the msgpack packer reads binary data, got text")
        return msgpack.loads(data)

    def encode_event(self, event: Any) -> msgpack.EncodedEvent:
        # Packed alone now (so an unsupported value is refused at send time); the batch reuses these bytes
        # wherever the key cache allows, and writes the rest again with the batch's one cache.
        return msgpack.encode_event(event)

    def pack_batch(self, encoded_events: Sequence[Any]) -> bytes:
        return msgpack.pack_batch(encoded_events)


GZIP_THRESHOLD = 1024
"""Inner output shorter than this many bytes is sent as is (flag 0), longer is gzipped (flag 1), as Sente does."""


class GzipPacker(Packer):
    """Sente's gzip wrapper (``taoensso.sente.packers.gzip/wrap-packer``) around any packer: always binary.

    Output: ``0x00`` + the inner packer's bytes (a str as UTF-8) below 1024 bytes, else ``0x01`` + a gzip
    stream of them (header as the JVM writes it: MTIME 0, OS 255). Reading is as lenient as the JVM's: any
    first byte but ``0x01`` means raw, concatenated gzip members and trailing bytes after a member are
    accepted; a batch is compressed once, whatever the number of recipients. ``max_unpacked`` bounds what a
    gzip stream may inflate to (a decompression bomb is a DecodeError).
    """

    binary = True

    def __init__(self, inner: Packer, *, max_unpacked: int = 64 * 1024 * 1024) -> None:
        self.wrapped = inner
        self.name = f"{inner.name}+gzip"  # type: ignore[misc]
        self.max_unpacked = max_unpacked

    def _wrap(self, packed: Packed) -> bytes:
        # Java's String.getBytes writes '?' for a lone surrogate; "replace" does the same
        data = packed.encode("utf-8", "replace") if isinstance(packed, str) else packed
        if len(data) < GZIP_THRESHOLD:
            return b"\x00" + data
        return b"\x01" + gzip_compress(data)

    def pack(self, value: Any) -> bytes:
        return self._wrap(self.wrapped.pack(value))

    def unpack(self, data: Packed) -> Any:
        if isinstance(data, str):
            raise DecodeError("the gzip packer reads binary data, got text")
        if not data:
            raise DecodeError("an empty message has no gzip flag byte")
        inner = gunzip(bytes(data[1:]), self.max_unpacked) if data[0] == 1 else bytes(data[1:])
        return self.wrapped.unpack(inner if self.wrapped.binary else inner.decode("utf-8", "replace"))

    def encode_event(self, event: Any) -> Any:
        return self.wrapped.encode_event(event)

    def pack_batch(self, encoded_events: Sequence[Any]) -> bytes:
        return self._wrap(self.wrapped.pack_batch(encoded_events))


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, MTIME 0, XFL 0, OS 255


def gzip_compress(data: bytes) -> bytes:
    """A gzip stream as java.util.zip.GZIPOutputStream writes it (zlib level 6, the JDK 16+ header)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
    body = deflate.compress(data) + deflate.flush()
    return _GZIP_HEADER + body + zlib.crc32(data).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate gzip members as GZIPInputStream does (further members are read, other trailing bytes ignored);
    DecodeError for a bad header, CRC or length, a truncated stream, or more than ``limit`` bytes out."""
    out: list[bytes] = []
    total = 0
    while True:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = member.decompress(data, limit - total + 1)
        except zlib.error as e:
            raise DecodeError(f"bad gzip data: {e}") from None
        total += len(chunk)
        if total > limit:
            raise DecodeError(f"gzip data inflates beyond {limit} bytes")
        if not member.eof:
            raise DecodeError("truncated gzip data")
        out.append(chunk)
        data = member.unused_data
        if data[:3] != b"\x1f\x8b\x08":
            return b"".join(out)


def get_packer(packer: str | Packer = "edn") -> Packer:
    """A packer by name (one of :data:`PACKER_NAMES`: ``"edn"``, ``"msgpack+gzip"``...) or the instance itself."""
    if isinstance(packer, Packer):
        return packer
    inner, plus, _ = packer.partition("+")
    if packer in PACKER_NAMES:
        made: Packer = EdnPacker() if inner == "edn" else TransitPacker() if inner == "transit" else MsgpackPacker()
        return GzipPacker(made) if plus else made
    raise ValueError(f"unknown packer {packer!r}: expected one of {', '.join(PACKER_NAMES)} or a Packer instance")
