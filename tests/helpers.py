"""Small helpers shared by the asyncio tests."""

from __future__ import annotations

import asyncio
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
