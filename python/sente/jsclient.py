"""sente.js, Sente's client for the browser, as the Python package ships it, and an ASGI wrapper serving it.

The file is built at development time from ``js/`` (``cd js && npm ci && npm run build``: the client plus
its codec libraries bundled into one ES module) and committed under ``sente/static/``, so serving it needs no
Node. ``with_sente_js(inner)`` answers ``GET /sente.js`` (and ``/sente.js.LICENSES.txt``, the licences of the
bundled libraries) and passes every other request to ``inner``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from .protocol.config import Response
from .server import AsgiApp
from .transport.asgi import Receive, Scope, Send, send_response

JS_CONTENT_TYPE = "text/javascript; charset=utf-8"


@cache
def static_file(name: str) -> str:
    """A file of ``sente/static/`` as text (``sente.js``, ``LICENSES.txt``, ``demo.html``)."""
    return resources.files("sente").joinpath("static", name).read_text(encoding="utf-8")


def sente_js() -> str:
    """The bundled client module."""
    return static_file("sente.js")


def with_sente_js(inner: AsgiApp, path: str = "/sente.js") -> AsgiApp:
    """``inner`` with ``GET path`` answering sente.js and ``GET path + '.LICENSES.txt'`` its licences."""
    files = {path: ("sente.js", JS_CONTENT_TYPE), path + ".LICENSES.txt": ("LICENSES.txt", "text/plain; charset=utf-8")}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in files and scope["method"] in ("GET", "HEAD"):
            name, content_type = files[scope["path"]]
            headers = [("Cache-Control", "no-cache")]
            await send_response(send, Response(200, static_file(name), (("Content-Type", content_type),)), headers)
        else:
            await inner(scope, receive, send)

    return app
