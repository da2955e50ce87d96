"""Waiting for something that happens on its own time (an event consumed, a mail sent, a board
updated): one `eventually` for every async test helper."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], within_s: float = 30.0, every_s: float = 0.1, what: str = "condition"
) -> T:
    """The first truthy result of `check()`, polled every `every_s` until `within_s` passes;
    then AssertionError naming `what` and the last result. A check returning a bool gives True."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within_s} s (last: {result!r})")
        await asyncio.sleep(every_s)
