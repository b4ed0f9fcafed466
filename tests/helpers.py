"""Small helpers shared by the tests: waiting in asyncio, stopping a child process."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

IO_TIMEOUT = 5.0


async def wait_until(pred: Callable[[], bool], timeout: float = IO_TIMEOUT) -> None:
    """Poll ``pred`` every 5 ms until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def stop(proc: subprocess.Popen[str]) -> None:
    """End a child we started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
