"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio


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
