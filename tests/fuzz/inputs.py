"""What the fuzzer sends: mutated and random WebSocket frames, Ajax requests and HTTP request heads.

Every generator takes a ``random.Random``, so a run is reproduced by its seed. Mutations start from inputs the
server accepts (Sente events in EDN, well-formed frames and heads) and break them in the ways parsers meet:
flipped bits and bytes, cut and repeated spans, lengths that lie, reserved bits and opcodes, tokens that stress
a reader (huge numbers, deep nesting, bad escapes, tags), odd header names, values and counts.
"""

from __future__ import annotations

import random
import struct
from urllib.parse import quote, urlencode

EVENTS = (
    '[[:test/echo 1] "cb1"]',
    '[[:test/echo {:a [1 2.5 "x" #{:s} nil true]}] "cb2"]',
    '[[:test/echo "text with \\"quotes\\" and \\\\ and \\n"] nil]',
    "[:chsk/ws-ping]",
    '[[:chsk/ws-ping] "cb3"]',
    '[[:test/push-me {:n 1}] nil]',
    '[[:test/no-reply 1] "cb4"]',
    '[[:test/close-me] nil]',
    '[[:some/unknown #uuid "5d1f6a4e-0000-4000-8000-000000000000"] "cb5"]',
    '[[:test/echo #inst "2024-01-02T03:04:05.678-00:00"] "cb6"]',
    '[[:test/echo 12345678901234567890123N] "cb7"]',
    '[[:test/echo 1.5M] "cb8"]',
    '[[:test/echo \\c] "cb9"]',
)
TOKENS = (
    "[", "]", "{", "}", "(", ")", "#{", '"', "\\", "#", ":", "::", "^", "~", "nil", "true", "#_", "##NaN", "##Inf",
    "1e999", "-0.0", "1/0", "0x" + "f" * 40, "36rZZZZZZZZZZ", "07777777777777777777", "9" * 200, "1" * 4400,
    '#inst "9999-99-99"', '#uuid "nope"', "#foo/bar 1", '"\\u00e9\\u4e2d"', '"\\uZZZZ"', '"\\x"', "\\newline",
    "\\u00", "é", "中", "\x00", "\x7f", "\u2028", " ", ",", "\t", "[" * 50, "]" * 50, '"' + "x" * 5000 + '"',
    "{:a 1 :a 2}", "#{1 1}", ":chsk/handshake", ":chsk/close", "[:chsk/uidport-open 1]",
    '"\\ud800"', '"a\\udfff"',  # EDN escapes of lone UTF-16 surrogates
)


def mutate_text(rng: random.Random, text: str) -> str:
    """One to four edits: flip, delete, repeat, or insert a token."""
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randrange(len(chars) + 1)
        if op < 0.25 and chars:
            chars[min(i, len(chars) - 1)] = chr(rng.choice((rng.randrange(32, 127), rng.randrange(0, 0x3000))))
        elif op < 0.45 and chars:
            del chars[i:i + rng.randint(1, 8)]
        elif op < 0.6 and chars:
            j = rng.randrange(len(chars))
            chars[i:i] = chars[j:j + rng.randint(1, 16)] * rng.randint(1, 4)
        else:
            chars[i:i] = list(rng.choice(TOKENS))
    return "".join(chars)


def event_text(rng: random.Random) -> str:
    """A Sente event in EDN, mutated most of the time."""
    base = rng.choice(EVENTS)
    return base if rng.random() < 0.15 else mutate_text(rng, base)


def mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True,
          length: int | None = None, rng: random.Random | None = None) -> bytes:
    """A client frame; ``length`` overrides the declared payload length (a lie), ``rsv`` sets RSV bits (0-7)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    m = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, m | 126, n)
    else:
        head = struct.pack("!BBQ", first, m | 127, n)
    key = bytes((rng or random).randrange(256) for _ in range(4))
    return head + (key + mask(payload, key) if masked else payload)


def ws_frames(rng: random.Random) -> list[bytes]:
    """A burst of frames for one connection: mostly plausible, some broken (the connection may end there)."""
    out: list[bytes] = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        text = event_text(rng).encode("utf-8", "surrogatepass")
        if kind < 0.4:
            out.append(frame(0x1, text, rng=rng))
        elif kind < 0.5:
            out.append(frame(0x2, text, rng=rng))
        elif kind < 0.6:  # fragmented, sometimes wrongly
            cut = rng.randrange(len(text) + 1)
            out.append(frame(0x1, text[:cut], fin=False, rng=rng))
            out.append(frame(rng.choice((0x0, 0x0, 0x1, 0x9)), text[cut:], rng=rng))
        elif kind < 0.65:
            out.append(frame(0x1, bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))), rng=rng))
        elif kind < 0.7:
            out.append(frame(rng.choice((0x9, 0xA)), bytes(rng.randrange(256) for _ in range(rng.randint(0, 125))),
                             rng=rng))
        elif kind < 0.75:
            out.append(frame(rng.choice((0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)), text, rng=rng))
        elif kind < 0.8:
            out.append(frame(0x1, text, rsv=rng.randint(1, 7), rng=rng))
        elif kind < 0.85:
            out.append(frame(0x1, text, masked=False))
        elif kind < 0.9:
            code = rng.choice((1000, 1001, 1002, 1005, 1006, 1015, 999, 2999, 3000, 4999, 5000, 65535))
            reason = rng.choice((b"", b"bye", b"\xff\xfe", b"x" * 200))
            out.append(frame(0x8, struct.pack("!H", code) + reason if rng.random() < 0.9 else b"\x03", rng=rng))
        elif kind < 0.95:  # a declared length that lies (the connection stalls or breaks)
            out.append(frame(0x1, text, length=rng.choice((0, len(text) + 5, 70_000, 2**40)), rng=rng))
        else:
            out.append(frame(0x9, b"x" * rng.randint(126, 300), rng=rng))  # a control frame too long
    if rng.random() < 0.3:
        whole = bytearray(b"".join(out))
        for _ in range(rng.randint(1, 8)):
            if whole:
                whole[rng.randrange(len(whole))] ^= 1 << rng.randrange(8)
        return [bytes(whole)]
    return out


LONG = 2000  # characters: uids and client-ids far over the broker's registry key


def client_id(rng: random.Random) -> str:
    return rng.choice((f"fz-{rng.randrange(10**6)}", "", "x\ny", "é" * 3, "a" * rng.randint(30, LONG), "\x00",
                       f"fz-{rng.randrange(10)}"))


def uid(rng: random.Random) -> str:
    return rng.choice((f"fz{rng.randrange(1000)}", "", "中" * rng.randint(1, LONG // 3), "u" * rng.randint(30, LONG),
                       "nil", ":kw", '"q"'))


def ajax_request(rng: random.Random, host: str) -> bytes:
    """A GET (handshake or poll) or a POST (an event) on /chsk, with mutated parameters, headers and bodies."""
    params: dict[str, str] = {}
    if rng.random() < 0.9:
        params["client-id"] = client_id(rng)
    if rng.random() < 0.7:
        params["uid"] = uid(rng)
    if rng.random() < 0.3:
        params["handshake?"] = rng.choice(("true", "", "false", "1"))
    if rng.random() < 0.2:
        params["csrf-token"] = rng.choice(("x", "", "é"))
    if rng.random() < 0.5:
        method = "POST"
        ppstr = event_text(rng)
        if rng.random() < 0.5:
            body = ("ppstr=" + quote(ppstr.encode("utf-8", "surrogatepass"), safe="")).encode()
        else:
            params["ppstr"] = ppstr
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        if rng.random() < 0.2:
            params["binary?"] = "true"
    else:
        method, body = rng.choice(("GET", "GET", "GET", "HEAD", "OPTIONS", "PUT", "DELETE")), b""
    query = urlencode(params, encoding="utf-8", errors="surrogatepass")
    headers = [f"Host: {host}", "Connection: close"]
    if method == "POST":
        headers.append(rng.choice(("Content-Type: application/x-www-form-urlencoded",
                                   "Content-Type: text/plain", "Content-Type: application/transit+json")))
        declared = len(body) if rng.random() < 0.9 else rng.choice((0, len(body) // 2))
        headers.append(f"Content-Length: {declared}")
    if rng.random() < 0.2:
        headers.append(f"Cookie: ring-session={rng.choice(('x', 'é.é', 'a.b', '..', chr(0x7f)))}")
    head = f"{method} /chsk?{query} HTTP/1.1\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def http_head(rng: random.Random, host: str) -> bytes:
    """A request head, valid or broken: odd methods, targets, versions, header lines and counts, upgrades."""
    method = rng.choice(("GET", "GET", "POST", "HEAD", "G\x00T", "get", "X" * 20, "", "CONNECT", "PRI"))
    target = rng.choice(("/", "/chsk", "/csrf-token", "/healthz", "/readyz", "/metrics", "/push?to=fz&x=1",
                         "/" + "a" * rng.randint(1, 20_000), "*", "http://127.0.0.1/", "/%00%ff", "/chsk?" + "&" * 500,
                         "/\u00e9", ""))
    version = rng.choice(("HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", "", "HTTP/9"))
    lines = [f"{method} {target} {version}".rstrip(), f"Host: {host}"]
    if rng.random() < 0.4:
        lines += ["Upgrade: websocket", "Connection: Upgrade",
                  f"Sec-WebSocket-Version: {rng.choice(('13', '8', '', 'x'))}",
                  f"Sec-WebSocket-Key: {rng.choice(('dGhlIHNhbXBsZSBub25jZQ==', '', 'short', '!!!!'))}"]
    for _ in range(rng.choice((0, 1, 3, 10, 99, 150))):
        name = rng.choice(("X-A", "Cookie", "Content-Length", "Transfer-Encoding", "Expect", "X\x00", "Bad Name",
                           "", "Connection"))
        value = rng.choice(("1", "-1", "chunked", "100-continue", "é", "x" * rng.randint(1, 9000), "\x01", "close"))
        lines.append(f"{name}: {value}")
    head = "\r\n".join(lines) + rng.choice(("\r\n\r\n", "\r\n\r\n", "\n\n", "\r\n", ""))
    data = head.encode("utf-8", "surrogateescape")
    if rng.random() < 0.2:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
    if rng.random() < 0.15:
        data = data[:rng.randrange(len(data) + 1)]
    return data
