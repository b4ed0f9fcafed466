"""TLS: ``sente serve --ssl-certfile/--ssl-keyfile`` serves https and wss on one port (the picows bridge over TLS),
the client's ``ssl=`` option, and ``sente probe --cafile/--insecure`` with a certificate the test makes (openssl).

The app is Sente mounted inside FastAPI without a lifespan for it (``tests/sente/stack_apps.py``): ``sente serve``
must start its router itself, and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sente.client import ConnectTimeout, connect
from sente.client.probe import probe
from tests.sente.cluster.test_processes import Output, next_event, process
from tests.sente.test_serve import free_port

APP = "tests.sente.stack_apps:fastapi_mounted"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return d / "cert.pem", d / "key.pem"


@contextlib.contextmanager
def tls_server(cert: tuple[Path, Path], *extra: str) -> Iterator[tuple[int, Output]]:
    port = free_port()
    argv = ["-m", "sente", "serve", APP, "--workers", "0", "--port", str(port),
            "--ssl-certfile", str(cert[0]), "--ssl-keyfile", str(cert[1]), *extra]
    with process(argv) as out:
        out.wait_for(f"sente: serving {APP} on https://127.0.0.1:{port}")
        yield port, out


def test_https_and_wss_on_one_port_with_the_client_trusting_the_certificate(cert: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(cafile=str(cert[0]))

    async def run(port: int) -> None:
        url = f"https://127.0.0.1:{port}/chsk"
        for kind in ("ws", "ajax"):
            async with connect(url, type=kind, params={"uid": "alice"}, ssl=context) as client:
                assert (client.state.type, client.state.uid) == (kind, "alice")
                reply = await client.request(["test/whoami", None], timeout=5)
                assert reply["pid"] > 0  # the router runs: sente serve started it
                client.send(["test/shout", kind])  # a push: written by the fan-out loop, through TLS
                while await next_event(client, "test/shouted") != kind:
                    pass  # the Ajax client may first get the WebSocket's shout, held for alice
        async with connect(url, type="ws", params={"uid": "bob"}, ssl=False) as client:  # no verification
            assert client.state.uid == "bob"
        with pytest.raises(ConnectTimeout, match="certificate verify failed: self-signed certificate"):
            async with connect(url, type="ws", params={"uid": "eve"}, open_timeout=2):  # the system's CAs
                pass

    with tls_server(cert) as (port, out):
        asyncio.run(asyncio.wait_for(run(port), 30))
        out.wait_for("the ASGI lifespan did not reach the Sente server at /chsk")


def test_probe_trusts_a_cafile_or_nothing_says_why_it_failed_and_speaks_the_packer(cert: tuple[Path, Path]) -> None:
    async def run(port: int) -> None:
        url = f"https://127.0.0.1:{port}/chsk"
        from sente.client.probe import ssl_option

        out = io.StringIO()
        assert await probe(url, uid="alice", type="ws", event="[:test/whoami nil]", out=out, packer="transit",
                           ssl=ssl_option(str(cert[0]), False)) == 0, out.getvalue()
        assert 'reply: {:uid "alice"' in out.getvalue()
        out = io.StringIO()
        assert await probe(url, uid="alice", type="ajax", out=out, ssl=ssl_option(None, True),
                           packer="transit") == 0, out.getvalue()
        out = io.StringIO()
        assert await probe(url, uid="alice", type="ajax", timeout=2, out=out) == 2
        assert "certificate verify failed: self-signed certificate" in out.getvalue(), out.getvalue()

    with tls_server(cert, "--packer", "transit") as (port, _):
        asyncio.run(asyncio.wait_for(run(port), 30))
        # the command line: --cafile, and --packer (with edn, the transit handshake is unreadable: say so)
        cmd = [sys.executable, "-m", "sente", "probe", f"https://127.0.0.1:{port}/chsk", "--uid", "alice", "--type",
               "ws", "--cafile", str(cert[0]), "--send", "[:test/whoami nil]", "--timeout", "3"]
        transit = subprocess.run([*cmd, "--packer", "transit"], capture_output=True, text=True, timeout=30)
        assert transit.returncode == 0 and "handshake: type=ws uid=\"alice\"" in transit.stdout, transit.stdout
        edn = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert edn.returncode != 0, edn.stdout  # the edn packer cannot read a transit server's handshake
        assert "not with a handshake the edn packer reads" in edn.stdout, edn.stdout


def test_tls_settings_name_missing_files_and_need_a_certificate(cert: tuple[Path, Path]) -> None:
    from sente.config import ConfigError, load_settings

    settings = load_settings({}, env={"SENTE_SSL_CERTFILE": str(cert[0]), "SENTE_SSL_KEYFILE": str(cert[1])})
    assert (settings.ssl_certfile, settings.ssl_keyfile) == (str(cert[0]), str(cert[1]))
    with pytest.raises(ConfigError, match="--ssl-certfile: no such file"):
        load_settings({"ssl_certfile": "/nonexistent/cert.pem"}, env={})
    with pytest.raises(ConfigError, match="need --ssl-certfile"):
        load_settings({"ssl_keyfile": str(cert[1])}, env={})
