"""Sente's request checks, in Sente's order: reject_fn, CSRF, origin, authorized_fn (protocol.md §6.1)."""

from __future__ import annotations

import hmac

from .config import SKIP_CSRF_CHECK, Response, ServerConfig
from .requests import Request

NO_CLIENT_ID = Response(
    500,
    "Client's Ring request doesn't have a client id. Does your server have the necessary keyword Ring "
    "middleware (`wrap-params` & `wrap-keyword-params`)?",
    (("Content-Type", "text/plain; charset=utf-8"),),
)


def client_csrf_token(request: Request) -> str | None:
    """The token the client presented: ``csrf-token`` param, else ``X-CSRF-Token``, else ``X-XSRF-Token``."""
    return request.param("csrf-token") or request.header("x-csrf-token") or request.header("x-xsrf-token")


def csrf_ok(config: ServerConfig, request: Request) -> bool:
    """True when the check is off, skipped for this request, or the tokens match (compared in constant time)."""
    if config.csrf_token_fn is None:
        return True
    reference = config.csrf_token_fn(request)
    if reference == SKIP_CSRF_CHECK:
        return True
    presented = client_csrf_token(request)
    if reference is None or presented is None:
        return False
    return hmac.compare_digest(reference.encode(), presented.encode())


def origin_ok(config: ServerConfig, request: Request) -> bool:
    """``Origin`` exactly in the allowed set; without one, a ``Referer`` under an allowed origin."""
    if config.allowed_origins == "all":
        return True
    origin = request.header("origin")
    if origin is not None:
        return origin in config.allowed_origins
    referer = request.header("referer")
    return referer is not None and any(referer.startswith(allowed + "/") for allowed in config.allowed_origins)


def rejection(config: ServerConfig, request: Request) -> Response | None:
    """The response refusing this request, or None to let it through."""
    if config.reject_fn is not None:
        response = config.reject_fn(request)
        if response is not None:
            return response
    if not csrf_ok(config, request):
        return config.bad_csrf_response
    if not origin_ok(config, request):
        return config.bad_origin_response
    if config.authorized_fn is not None and not config.authorized_fn(request):
        return config.unauthorized_response
    return None
