"""The client's Ajax transport over aiohttp: Sente's long-poll GETs and event POSTs, byte for byte.

Why aiohttp: it is actively maintained, asyncio-native, keeps connections alive in a pool (a long-poll
client issues a request every few seconds forever), and sends requests exactly as given: we build the
query string and form body ourselves (Encore's encoding: ``encodeURIComponent``, ``%20`` for spaces,
``handshake%3F``) and aiohttp passes them through unchanged (``yarl.URL(..., encoded=True)``). Its
cookie jar is disabled: cookies travel in the caller's ``headers`` as they do on the WebSocket upgrade.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import yarl

URI_SAFE = "!'()*"  # what encodeURIComponent leaves alone besides letters, digits and -_.~


def encode_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """``k=v&...`` with keys and values encoded as Encore does (``encodeURIComponent``)."""
    return "&".join(f"{quote(k, safe=URI_SAFE)}={quote(v, safe=URI_SAFE)}" for k, v in pairs)


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


class AjaxHttp:
    """One aiohttp session (keep-alive pool) for a client's GETs and POSTs; ``ssl`` as aiohttp's (True: verify
    with the system's CAs, a context, or False: do not verify)."""

    def __init__(self, ssl: ssl.SSLContext | bool = True) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True)
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        query: Sequence[tuple[str, str]],
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        timeout_s: float | None,
    ) -> HttpResult:
        """One HTTP exchange; raises ``asyncio.TimeoutError`` on timeout, ``aiohttp.ClientError``/``OSError`` else."""
        target = url + ("?" + encode_pairs(query) if query else "")
        async with self._get_session().request(
            method,
            yarl.URL(target, encoded=True),
            headers=list(headers),
            data=body,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
            ssl=self._ssl,
        ) as response:
            data = await response.read()
            return HttpResult(response.status, data, tuple(response.headers.items()))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
