"""RFC 6455 server frames built once, written as-is to many sockets.

A server-to-client frame is never masked (RFC 6455 §5.1), so the same bytes are valid on every
connection: fan-out packs a message once, frames it once here, and hands the result to
``WsConnection.send_frame`` for each recipient. Only single-frame (FIN) messages are built; the
payload length uses the shortest of the three encodings (§5.2): 7-bit up to 125, 16-bit up to
65535, 64-bit above.
"""

from __future__ import annotations

import struct

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_TEXT",
    "build_binary_frame",
    "build_close_frame",
    "build_frame",
    "build_text_frame",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8

_FIN = 0x80
_U16 = struct.Struct("!BBH")
_U64 = struct.Struct("!BBQ")


def build_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame with ``opcode`` and ``payload`` (header + payload bytes)."""
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"invalid opcode {opcode:#x}")
    n = len(payload)
    first = _FIN | opcode
    if n < 126:
        header = bytes((first, n))
    elif n < 0x10000:
        header = _U16.pack(first, 126, n)
    else:
        header = _U64.pack(first, 127, n)
    return header + payload


def build_text_frame(payload: str | bytes) -> bytes:
    """A text frame; ``str`` is UTF-8 encoded, ``bytes`` must already be UTF-8 (not checked)."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return build_frame(OP_TEXT, data)


def build_binary_frame(payload: bytes) -> bytes:
    """A binary frame."""
    return build_frame(OP_BINARY, payload)


def build_close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    """A close frame; ``code=None`` gives the empty close payload (no status code)."""
    if code is None:
        return build_frame(OP_CLOSE, b"")
    body = struct.pack("!H", code) + reason.encode("utf-8")
    if len(body) > 125:
        raise ValueError("close reason too long (control frame payload is limited to 125 bytes)")
    return build_frame(OP_CLOSE, body)
