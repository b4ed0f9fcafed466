"""The HTTP side of a WebSocket upgrade: the request uvicorn hands over, the RFC 6455 checks, the refusal's bytes.

uvicorn's HTTP protocol has parsed the upgrade request and re-serialised it; :func:`parse_upgrade` reads it back into
an :class:`UpgradeRequest` (what a :class:`~sente.transport.connection.WsHandler` sees), :func:`handshake_error`
makes the checks uvicorn has not made, :func:`http_response_bytes` writes a refusal as a plain HTTP/1.1 response, and
:func:`canonical_upgrade` is the minimal request picows answers with its 101.
"""

from __future__ import annotations

import binascii
import sys
from base64 import b64decode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

from sente.protocol.requests import Cookies, HeadLines, QueryPairs


@dataclass(slots=True)
class UpgradeRequest:
    """The client's upgrade request, as the handler sees it."""

    method: str
    path: str  # percent-decoded path, without the query
    query_string: str  # the raw query string, undecoded, without "?"
    query: Sequence[tuple[str, str]]  # decoded (name, value) pairs, in order, blanks kept
    headers: Sequence[tuple[str, str]]  # (lower-case name, value), in order
    cookies: Mapping[str, str]  # from the Cookie header(s); first occurrence of a name wins
    client: tuple[str, int] | None  # peer (host, port)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def param(self, name: str) -> str | None:
        """First value of query parameter ``name``, or None."""
        for k, v in self.query:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class HttpResponse:
    """A plain HTTP response sent instead of the 101 when an upgrade is refused."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


_intern = sys.intern


def parse_upgrade(data: bytes, client: tuple[str, int] | None) -> UpgradeRequest:
    """Parse the request uvicorn re-serialised: ``METHOD target HTTP/1.1`` + ``name: value`` lines."""
    head, _, _ = data.partition(b"\r\n\r\n")
    request_line, _, block = head.partition(b"\r\n")
    method, _, rest = request_line.partition(b" ")
    target, _, _version = rest.rpartition(b" ")
    raw_path, _, raw_query = target.partition(b"?")
    query_string = raw_query.decode("latin-1")
    # Kept as the request's own bytes, parsed on each read: every open connection keeps its request (event
    # messages carry it), and lists of small strings cost ~1.9 KB per idle connection.
    headers = HeadLines(block)
    return UpgradeRequest(
        method=_intern(method.decode("latin-1")),
        path=unquote(raw_path.decode("latin-1")),
        query_string=query_string,
        query=QueryPairs(query_string),
        headers=headers,
        cookies=Cookies(headers),
        client=client,
    )


def handshake_error(request: UpgradeRequest) -> HttpResponse | None:
    """RFC 6455 §4.2.1 checks uvicorn has not already made (it checked Upgrade and Connection)."""
    if request.method != "GET":
        return HttpResponse(405, [("Allow", "GET"), ("Content-Type", "text/plain")], b"Method Not Allowed")
    if request.header("sec-websocket-version") != "13":
        return HttpResponse(
            426,
            [("Sec-WebSocket-Version", "13"), ("Content-Type", "text/plain")],
            b"Unsupported WebSocket version",
        )
    key = request.header("sec-websocket-key") or ""
    try:
        ok = len(b64decode(key.encode("ascii"), validate=True)) == 16
    except (UnicodeEncodeError, binascii.Error):
        ok = False
    if not ok:
        return HttpResponse(400, [("Content-Type", "text/plain")], b"Missing or invalid Sec-WebSocket-Key")
    return None


def http_response_bytes(resp: HttpResponse) -> bytes:
    """``resp`` as HTTP/1.1 bytes, with its own ``Content-Length`` and ``Connection: close``."""
    try:
        phrase = HTTPStatus(resp.status).phrase
    except ValueError:
        phrase = ""
    out = [f"HTTP/1.1 {resp.status} {phrase}\r\n"]
    for name, value in resp.headers:
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        if name.lower() in ("content-length", "connection", "transfer-encoding"):
            continue
        out.append(f"{name}: {value}\r\n")
    out.append(f"Content-Length: {len(resp.body)}\r\nConnection: close\r\n\r\n")
    return "".join(out).encode("latin-1") + resp.body


def canonical_upgrade(key: str) -> bytes:
    """The least upgrade request picows accepts, carrying the client's key (picows answers the 101)."""
    return (
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key.encode("ascii") + b"\r\n\r\n"
    )

