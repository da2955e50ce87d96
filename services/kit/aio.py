"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set.

    Uses `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11, `wait_for` can swallow a
    cancellation that arrives as the inner wait completes (the task then runs on, "cancelling"
    but never cancelled), which hung a relay's cancellation in the tests.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def honour_cancellation() -> None:
    """Re-raise a cancellation that a library swallowed.

    nats-py waits for replies with `asyncio.wait_for`, which on Python 3.11 can return the reply
    and drop a cancellation that arrived at the same moment: the task is left "cancelling" but
    runs on. Loops call this after such awaits so a cancelled relay or consumer stops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PrioritySlots:
    """At most `size` holders at once; a waiter with a lower `priority` is admitted first (FIFO
    among equals). Used to ask a recovering dependency about the oldest work first, a few at a
    time, instead of letting a backlog of retries storm it."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._free = size
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    async def acquire(self, priority: float) -> None:
        """Wait for a slot (a cancellation while waiting takes none); `release()` gives it back."""
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            else:
                fut.cancel()
            raise

    def release(self) -> None:
        self._release()

    @contextlib.asynccontextmanager
    async def hold(self, priority: float) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
