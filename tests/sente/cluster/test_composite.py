"""``ChannelSocketServer(redis_url=...)``: the cluster layer composes the server's backplane with a Redis link, through
the seam ``import sente`` installs in :mod:`sente.protocol.backplane` (the server never imports the cluster)."""

from __future__ import annotations

import asyncio

import pytest

from sente.cluster.composite import CompositeBackplane, with_redis
from sente.cluster.redis import RedisLink
from sente.protocol import backplane
from sente.protocol.backplane import LocalBackplane
from sente.server import ChannelSocketServer

URL = "redis://127.0.0.1:1/0"  # never dialled: a link connects when the server starts, not when it is built


def _server(**options: object) -> ChannelSocketServer:
    async def build() -> ChannelSocketServer:
        return ChannelSocketServer(csrf_token_fn=None, **options)

    return asyncio.run(build())


def test_redis_url_joins_this_process_to_the_other_nodes() -> None:
    bp = _server(redis_url=URL).core.backplane
    assert isinstance(bp, CompositeBackplane)
    assert isinstance(bp.local, LocalBackplane) and isinstance(bp.link, RedisLink) and bp.link.url == URL


def test_redis_url_keeps_the_given_backplane_as_this_nodes_part() -> None:
    local = LocalBackplane()
    bp = _server(backplane=local, redis_url=URL).core.backplane
    assert isinstance(bp, CompositeBackplane) and bp.local is local


def test_a_backplane_that_already_has_a_redis_link_is_kept() -> None:
    joined = with_redis(None, URL)
    assert with_redis(joined, "redis://127.0.0.1:2/0") is joined


def test_without_a_cluster_layer_installed_redis_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backplane, "_join_remote", None)
    with pytest.raises(RuntimeError, match="no cluster layer installed"):
        _server(redis_url=URL)
