"""csente inside the user's ASGI stack: FastAPI/Starlette mounts, lifespans, sync callers, host sessions, CORS, ops.

Each test serves a real FastAPI or Starlette app on uvicorn (its own WebSocket implementation: WebSockets go
through the ASGI stack, middleware included) in the test's event loop, and talks to it with our client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from sente.app import SenteApp
from sente.client import ConnectionRejected, connect
from sente.logs import RedactCsrfTokens
from sente.protocol.server import EventMsg
from sente.serve import uvicorn_config
from sente.server import AsgiApp, ChannelSocketServer
from sente.sessions import HostSessions
from tests.helpers import wait_until

TEST_TIMEOUT = 20.0


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), TEST_TIMEOUT))


@contextlib.asynccontextmanager
async def serving(app: AsgiApp | Any, log_level: str = "warning") -> AsyncIterator[str]:
    """``app`` on uvicorn (httptools, its own WebSocket implementation) on a free port; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="auto", log_config=None, log_level=log_level)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    await wait_until(lambda: server.started or task.done())
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def echo_server(**options: Any) -> ChannelSocketServer:
    """The uid is the ``uid`` param, no CSRF check (unless options say otherwise); ``test/echo`` replies."""
    options.setdefault("user_id_fn", lambda request: request.param("uid"))
    options.setdefault("csrf_token_fn", None)
    chsk = ChannelSocketServer(send_buf_ms_ws=0, send_buf_ms_ajax=0, **options)

    @chsk.on("test/echo")
    def echo(msg: EventMsg) -> None:
        if msg.reply is not None:
            msg.reply({"uid": msg.uid, "echo": msg.data})

    return chsk


async def echoes(url: str, uid: str = "alice") -> None:
    """A WebSocket and an Ajax client at ``url`` each get their handshake and a reply from a handler."""
    for kind in ("ws", "ajax"):
        async with connect(url, type=kind, params={"uid": uid}, open_timeout=5) as client:
            assert (client.state.type, client.state.uid) == (kind, uid)
            assert (await client.request(["test/echo", 1], timeout=5))["echo"] == 1


# ======================================================================================== 1. mounting


def test_mounted_at_the_root_of_fastapi_without_its_lifespan_it_starts_on_first_use_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    chsk = echo_server()
    app = FastAPI()  # no lifespan=chsk.lifespan: Starlette does not pass the lifespan to mounted apps

    @app.get("/hello")
    def hello() -> str:
        return "world"

    app.mount("/", chsk.asgi())

    async def test() -> None:
        async with serving(app) as base:
            assert not chsk.started
            await echoes(f"{base}/chsk")
            await echoes(f"{base}/chsk", "bob")
            assert chsk.started
            async with aiohttp.ClientSession() as http, http.get(f"{base}/hello") as r:
                assert await r.json() == "world"  # the app's own routes still answer

    with caplog.at_level(logging.INFO, "sente.server"):
        run(test)
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "no ASGI lifespan reached it" in r.message)) == 1


def test_mounted_under_a_prefix_it_serves_prefix_plus_its_path() -> None:
    chsk = echo_server()
    app = FastAPI(lifespan=chsk.lifespan)
    app.mount("/rt", chsk.asgi())

    async def test() -> None:
        async with serving(app) as base:
            assert chsk.started  # with the app's lifespan
            await echoes(f"{base}/rt/chsk")
        assert not chsk.started  # and stopped with it

    run(test)


def test_chsk_mount_serves_the_exact_path_and_a_mount_at_the_path_serves_it_with_a_slash() -> None:
    exact, slashed = echo_server(), echo_server()
    app = FastAPI()
    exact.mount(app)  # /chsk itself, WebSocket and Ajax
    app.mount("/other", slashed.asgi(), name="other")
    slashed.path = "/other"  # mounted at its own path: Starlette forwards /other/ (not /other)

    async def test() -> None:
        async with serving(app) as base:
            await echoes(f"{base}/chsk")
            await echoes(f"{base}/other/")

    run(test)


def test_a_starlette_app_with_the_lifespan_and_sente_mounted_after_its_routes() -> None:
    chsk = echo_server()

    async def page(request: Any) -> PlainTextResponse:
        return PlainTextResponse("page")

    app = Starlette(routes=[Route("/page", page), Mount("/", app=chsk.asgi())], lifespan=chsk.lifespan)

    async def test() -> None:
        async with serving(app) as base:
            await echoes(f"{base}/chsk")
            async with aiohttp.ClientSession() as http, http.get(f"{base}/page") as r:
                assert await r.text() == "page"

    run(test)


# ======================================================================================== 2. other threads


def test_send_broadcast_and_connected_uids_work_from_other_threads() -> None:
    chsk = echo_server()
    app = FastAPI(lifespan=chsk.lifespan)
    chsk.mount(app)
    with pytest.raises(RuntimeError, match="no event loop yet"):
        chsk.broadcast(["test/early", None])  # from a thread, before the server runs: a clear error

    @app.post("/push/{uid}")
    def push(uid: str) -> dict[str, Any]:  # a sync route: FastAPI runs it in its threadpool
        assert threading.current_thread() is not threading.main_thread()
        return {"sent": chsk.send(uid, ["test/pushed", {"to": uid}]), "uids": sorted(chsk.connected_uids.any)}

    async def test() -> None:
        async with serving(app) as base, connect(f"{base}/chsk", type="ws", params={"uid": "alice"}) as ws, \
                connect(f"{base}/chsk", type="ajax", params={"uid": "bob"}) as ajax:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/push/bob") as r:
                    assert await r.json() == {"sent": True, "uids": ["alice", "bob"]}
                async with http.post(f"{base}/push/carol") as r:
                    assert (await r.json())["sent"] is False
            assert (await ajax.next_event(5)).data == {"to": "bob"}
            thread = threading.Thread(target=lambda: [chsk.broadcast(["test/all", n]) for n in range(3)])
            thread.start()
            await asyncio.to_thread(thread.join)
            for client in (ws, ajax):
                assert [(await client.next_event(5)).data for _ in range(3)] == [0, 1, 2]  # in order

    run(test)


# ======================================================================================== 3. host sessions


def host_session_app(chsk: ChannelSocketServer) -> FastAPI:
    app = FastAPI(lifespan=chsk.lifespan)
    app.add_middleware(SessionMiddleware, secret_key="test-secret")
    chsk.mount(app)

    @app.get("/login")
    async def login(request: Request, uid: str) -> str:
        request.session["uid"] = uid
        return HostSessions.csrf_token(request.session)

    return app


async def login(base: str, uid: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/login", params={"uid": uid}) as r:
        return await r.json(), r.headers["Set-Cookie"].split(";")[0]


def test_host_sessions_give_the_uid_and_the_csrf_token_from_the_frameworks_session() -> None:
    chsk = ChannelSocketServer(sessions=HostSessions())
    app = host_session_app(chsk)

    async def test() -> None:
        async with serving(app) as base:
            token, cookie = await login(base, "alice")
            for kind in ("ws", "ajax"):
                async with connect(f"{base}/chsk", type=kind, csrf_token=token, headers={"Cookie": cookie}) as c:
                    assert c.state.uid == "alice"
                with pytest.raises(ConnectionRejected) as refused:  # a token not in the session
                    async with connect(f"{base}/chsk", type=kind, csrf_token="forged", headers={"Cookie": cookie}):
                        pass
                assert (refused.value.status, refused.value.body) == (403, b"Bad CSRF token")
            with pytest.raises(ConnectionRejected):  # no session at all
                async with connect(f"{base}/chsk", type="ajax", csrf_token=token):
                    pass

    run(test)


def test_sente_serves_uvicorn_config_routes_host_session_websockets_through_the_asgi_stack() -> None:
    chsk = ChannelSocketServer(sessions=HostSessions())
    app = host_session_app(chsk)
    config = uvicorn_config(SenteApp(chsk, app), port=0, log_level="warning")
    assert config.ws == "auto"  # not the picows bridge, which would bypass the session middleware

    async def test() -> None:
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve())
        await wait_until(lambda: server.started or task.done())
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        try:
            token, cookie = await login(base, "dave")
            async with connect(f"{base}/chsk", type="ws", csrf_token=token, headers={"Cookie": cookie}) as c:
                assert c.state.uid == "dave"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)

    run(test)


def test_the_uid_can_come_from_the_frameworks_authenticated_user() -> None:
    chsk = echo_server(user_id_fn=lambda request: request.user)

    async def as_carol(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["user"] = "carol"  # what an authentication middleware puts in the scope
        await inner(scope, receive, send)

    inner = chsk.asgi()

    async def test() -> None:
        async with serving(as_carol) as base, connect(f"{base}/chsk", type="ws") as client:
            assert client.state.uid == "carol"

    run(test)


# ======================================================================================== 4. CORS


def test_allowed_origins_answer_preflights_and_mark_responses_for_the_browser() -> None:
    chsk = echo_server(allowed_origins={"http://page.test:9000"})
    app = FastAPI(lifespan=chsk.lifespan)
    chsk.mount(app)

    async def test() -> None:
        async with serving(app) as base, aiohttp.ClientSession() as http:
            asked = {"Origin": "http://page.test:9000", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "x-csrf-token, content-type"}
            async with http.options(f"{base}/chsk", headers=asked) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == "http://page.test:9000"
                assert r.headers["Access-Control-Allow-Credentials"] == "true"
                assert r.headers["Access-Control-Allow-Methods"] == "GET, POST"
                assert r.headers["Access-Control-Allow-Headers"] == "x-csrf-token, content-type"
            async with http.options(f"{base}/chsk", headers={**asked, "Origin": "http://evil.test"}) as r:
                assert r.status == 405 and "Access-Control-Allow-Origin" not in r.headers
            query = {"client-id": "c1", "uid": "alice", "handshake?": "1"}
            async with http.get(f"{base}/chsk", params=query, headers={"Origin": "http://page.test:9000"}) as r:
                assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "http://page.test:9000"
            async with http.get(f"{base}/chsk", params=query, headers={"Origin": "http://evil.test"}) as r:
                assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers

    run(test)


# ======================================================================================== 5. ops endpoints


def test_ops_endpoints_mount_anywhere_and_report_this_process() -> None:
    chsk = echo_server()
    app = FastAPI()  # no lifespan for Sente: ready only once its first request started it
    app.mount("/ops", chsk.ops_asgi())
    app.mount("/", chsk.asgi())

    async def test() -> None:
        async with serving(app) as base, aiohttp.ClientSession() as http:
            async with http.get(f"{base}/ops/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "starting"
            async with http.get(f"{base}/ops/readyz") as r:
                assert r.status == 503
            await echoes(f"{base}/chsk")
            async with http.get(f"{base}/ops/readyz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ready"
            async with http.get(f"{base}/ops/metrics") as r:
                text = await r.text()
                assert r.status == 200 and 'sente_handshakes_total{result="ok",transport="ws"}' in text, text
            async with http.get(f"{base}/ops/nothing") as r:
                assert r.status == 404

    run(test)


# ======================================================================================== 6. access logs


def test_csrf_tokens_stay_out_of_the_servers_access_logs(caplog: pytest.LogCaptureFixture) -> None:
    chsk = echo_server(csrf_token_fn=lambda request: "s3cret-token")
    app = FastAPI(lifespan=chsk.lifespan)
    chsk.mount(app)

    async def test() -> None:
        async with serving(app, "info") as base:
            for kind in ("ws", "ajax"):
                async with connect(f"{base}/chsk", type=kind, csrf_token="s3cret-token", params={"uid": "a"}):
                    pass
            async with aiohttp.ClientSession() as http:  # a token in an Ajax GET's query, as browsers may send it
                await (await http.get(f"{base}/chsk", params={"client-id": "c", "csrf-token": "s3cret-token"})).read()

    with caplog.at_level(logging.INFO):
        run(test)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")]
    assert any("csrf-token=[redacted]" in line and "WebSocket" in line for line in lines), lines
    assert any("csrf-token=[redacted]" in line and "GET" in line for line in lines), lines
    assert not any("s3cret-token" in line for line in lines), lines


def test_the_redacting_filter_reads_hypercorns_mapping_arguments() -> None:
    record = logging.LogRecord("hypercorn.access", logging.INFO, "", 0, "%(r)s %(q)s", None, None)
    record.args = {"r": "GET /chsk?csrf-token=abc&x=1 HTTP/1.1", "q": "csrf-token=abc", "s": 200}
    assert RedactCsrfTokens().filter(record)
    assert record.getMessage() == "GET /chsk?csrf-token=[redacted]&x=1 HTTP/1.1 csrf-token=[redacted]"
