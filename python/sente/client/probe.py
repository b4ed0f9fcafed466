"""``sente probe URL``: connect, print the handshake and the wire transcript, optionally send one event.

Protocol-level debugging (Sente's FAQ "connection debugging"): every WebSocket frame and HTTP exchange
is printed as it happens. ``--token-url`` fetches a CSRF token and session cookie first (the reference
test app's ``/csrf-token``; the body is the token, ``Set-Cookie`` the session).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import sys
from typing import Any, TextIO

import aiohttp

from csente import edn

from .api import connect
from .errors import ChskClosed, ChskError, ChskTimeout, ConnectionRejected, ConnectTimeout, describe_error
from .messages import WireRecord
from .transports import tls_context


def ssl_option(cafile: str | None, insecure: bool) -> _ssl.SSLContext | bool | None:
    """``--cafile``/``--insecure`` as the client's ``ssl`` option (None: the system's CAs)."""
    if insecure:
        return False
    return _ssl.create_default_context(cafile=cafile) if cafile else None


async def probe(
    url: str,
    *,
    uid: str | None = None,
    type: str = "auto",
    event: str | None = None,
    timeout: float = 5.0,
    token_url: str | None = None,
    csrf_token: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    trace: bool = False,
    packer: str = "edn",
    ssl: _ssl.SSLContext | bool | None = None,
    out: TextIO = sys.stdout,
) -> int:
    if trace:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    headers = list(headers or [])
    if token_url is not None:
        target = token_url + (("&" if "?" in token_url else "?") + f"uid={uid}" if uid else "")
        verify = False if ssl is False else tls_context(ssl) if target.startswith("https:") else True
        try:
            async with aiohttp.ClientSession() as s, s.get(target, ssl=verify) as r:
                csrf_token = (await r.text()).strip()
                cookie = r.headers.get("Set-Cookie")
                if cookie:
                    headers.append(("Cookie", cookie.split(";")[0]))
        except (aiohttp.ClientError, OSError) as e:
            print(f"cannot get a token from {target}: {describe_error(e)}", file=out)
            return 2
        print(f"csrf token from {target}: {csrf_token}", file=out)

    answered: list[WireRecord] = []
    errors: list[str | bytes] = []

    def show(record: WireRecord) -> None:
        if record.dir == "s2c" and record.kind in ("ws_frame", "http_response") and record.status in (None, 200):
            answered.append(record)
        if record.kind in ("ws_error", "http_error"):
            errors.append(record.raw)
        print(record.line(), file=out, flush=True)

    options: dict[str, Any] = {"type": type, "csrf_token": csrf_token, "headers": headers, "trace": show,
                               "str_keys": False, "open_timeout": timeout, "packer": packer, "ssl": ssl}
    if uid is not None:
        options["params"] = {"uid": uid}
    try:
        async with connect(url, **options) as client:
            st = client.state
            print(f"handshake: type={st.type} uid={edn.dumps(st.uid)} handshake-data={edn.dumps(st.handshake_data)}",
                  file=out)
            if event is not None:
                try:
                    reply = await client.request(edn.loads(event), timeout=timeout)
                    print(f"reply: {edn.dumps(reply)}", file=out)
                except (ChskTimeout, ChskClosed, ChskError) as e:
                    print(f"no reply: {type_name(e)}: {e}", file=out)
                    return 1
            else:
                await asyncio.sleep(0.1)
    except ConnectionRejected as e:
        print(f"rejected: HTTP {e.status}: {e.body.decode('utf-8', 'replace')}", file=out)
        return 2
    except ConnectTimeout as e:
        print(f"no handshake: {e}", file=out)
        if errors:
            print(f"last error: {errors[-1]!s}", file=out)
        if answered:
            print(f"the server answered, but not with a handshake the {packer} packer reads: is the server's packer "
                  f"another (--packer {'edn' if packer == 'transit' else 'transit'})?", file=out)
        return 2
    return 0


def type_name(e: Exception) -> str:
    return type(e).__name__
