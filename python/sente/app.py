"""What ``sente serve`` runs: a Sente server together with the ASGI application around it."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .server import AsgiApp, ChannelSocketServer


@dataclass
class SenteApp:
    """A channel-socket server and the ASGI app serving it (Sente's path plus the app's own routes)."""

    server: ChannelSocketServer
    asgi: AsgiApp


AppFactory = Callable[..., SenteApp]
"""``factory(packer=..., **server_options) -> SenteApp``: how ``sente serve`` passes its flags on."""


def load_app_factory(spec: str) -> AppFactory:
    """Import ``module:attr`` and return the factory it names; modules in the working directory are found too."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"APP must look like 'package.module:factory', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as uvicorn does: `sente serve chat:app` next to chat.py
    factory: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        factory = getattr(factory, part)
    if not (inspect.isfunction(factory) or inspect.ismethod(factory) or isinstance(factory, functools.partial)):
        raise TypeError(
            f"{spec} is {_a(factory)}, not a factory: sente serve calls APP(packer=..., **options) in every worker "
            "and serves the SenteApp it returns, so APP must name a function like "
            "'def app(packer=\"edn\", **options): ... return SenteApp(chsk, chsk.asgi(inner))' (README: The server); "
            "an ASGI app such as FastAPI() is the inner app it wraps")
    return cast(AppFactory, factory)


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"a {name} object" if not isinstance(value, type) else f"the class {value.__name__}"
