"""What one idle WebSocket connection costs the server in memory, and where it goes.

The server (``sente.bench.app``'s app on uvicorn + the picows bridge, uvloop) runs in this process; the
clients run in a child process (plain blocking sockets: upgrade request, wait for ``[:chsk/handshake ...]``,
then stay idle), so nothing of theirs is counted. Two batches of ``-n`` connections:

1. without tracing: the VmRSS delta per connection (what the fan-out benchmark's "KB/idle conn" measures,
   less the allocator's rounding over a whole run);
2. under ``tracemalloc``: the Python-heap delta per connection, grouped by allocation site (``lineno``) and by
   traceback, so each item can be traced to the code that keeps it alive.

RSS minus the traced delta is what Python's allocators do not see (libuv/uvloop C structures allocated with
plain malloc, allocator fragmentation, pymalloc arenas); kernel socket buffers are not in RSS at all.

    python -m bench.conn_memory -n 2000 [--top 25] [--frames 12]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import socket
import subprocess
import sys
import tracemalloc

CLIENT = r"""
import resource, socket, sys
n, port, start = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
socks = []
for i in range(start, start + n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"GET /chsk?client-id=c{i}&uid=u{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    got = b""
    while b"chsk/handshake" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"connection {i} closed: {got!r}")
        got += chunk
    socks.append(s)
print("OPEN", flush=True)
sys.stdin.read()  # stay idle until the parent closes our stdin
"""


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def open_batch(n: int, port: int, start: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, str(n), str(port), str(start)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
    if line.strip() != "OPEN":
        raise RuntimeError(f"client batch failed: {line!r}")
    await asyncio.sleep(0.3)  # let the last handshakes' writes and timers settle
    return proc


def _type_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        t = type(obj)
        name = f"{t.__module__}.{t.__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def settle() -> None:
    gc.collect()


async def main(n: int, top: int, frames: int) -> None:
    import uvicorn

    from sente.bench.app import app
    from sente.serve import uvicorn_config

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 3 * n + 200)), hard))
    port = free_port()
    sente_app = app(send_buf_ms_ws=0)
    server = uvicorn.Server(uvicorn_config(sente_app, "127.0.0.1", port, "warning", log_config=None))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    procs = [await open_batch(100, port, 10**6)]  # warm-up: first-connection caches, code objects, dict growth

    settle()
    rss0 = rss_kb()
    procs.append(await open_batch(n, port, 0))
    settle()
    rss1 = rss_kb()
    print(f"{n} idle connections, {type(asyncio.get_running_loop()).__module__} loop")
    print(f"RSS (untraced batch): {(rss1 - rss0) * 1024 / n / 1000:.2f} KB per connection")

    tracemalloc.start(frames)
    settle()
    types0 = _type_counts()
    before = tracemalloc.take_snapshot()
    traced0 = tracemalloc.get_traced_memory()[0]
    procs.append(await open_batch(n, port, n))
    settle()
    after = tracemalloc.take_snapshot()
    traced1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    types1 = _type_counts()
    print(f"Python heap (traced batch): {(traced1 - traced0) / n:.0f} B per connection")
    print("\n-- gc-tracked objects alive per connection, by type")
    diff = sorted(((types1.get(t, 0) - c0) / n, t) for t, c0 in {**types1, **types0}.items())
    for per, name in reversed(diff):
        if per >= 0.5:
            print(f"{per:6.2f}  {name}")

    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    print(f"\n-- by allocation site (B per connection, objects per connection), top {top}")
    for stat in after.compare_to(before, "lineno")[:top]:
        if stat.size_diff / n < 4:
            break
        fr = stat.traceback[0]
        print(f"{stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f}  {_short(fr.filename)}:{fr.lineno}")
    print(f"\n-- by traceback (innermost frame last), top {top}")
    for stat in after.compare_to(before, "traceback")[:top]:
        if stat.size_diff / n < 4:
            break
        print(f"{stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f}")
        for fr in list(stat.traceback)[-min(frames, 6):]:
            print(f"             {_short(fr.filename)}:{fr.lineno}")

    for proc in procs:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()
    server.should_exit = True
    await serving


def _short(filename: str) -> str:
    for marker in ("site-packages/", "python/", "lib/python3"):
        i = filename.find(marker)
        if i >= 0:
            return filename[i + len(marker):]
    return os.path.basename(filename)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="connections per batch")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=12, help="traceback depth kept by tracemalloc")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(main(args.n, args.top, args.frames))
    except ImportError:
        asyncio.run(main(args.n, args.top, args.frames))
