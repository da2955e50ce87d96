"""PrioritySlots: at most `size` holders; waiters admitted lowest priority first; a cancelled
waiter takes no slot and loses none."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.aio import PrioritySlots


async def test_waiters_are_admitted_lowest_priority_first() -> None:
    slots = PrioritySlots(1)
    order: list[str] = []
    await slots.acquire(0)

    async def wait(name: str, priority: float) -> None:
        async with slots.hold(priority):
            order.append(name)

    tasks = [asyncio.create_task(wait(n, p)) for n, p in (("young", 30.0), ("old", 10.0), ("middle", 20.0))]
    await asyncio.sleep(0)
    assert slots.waiting == 3
    slots.release()
    await asyncio.gather(*tasks)
    assert order == ["old", "middle", "young"]
    assert slots.waiting == 0


async def test_at_most_size_hold_at_once() -> None:
    slots = PrioritySlots(3)
    holding = peak = 0

    async def work(i: int) -> None:
        nonlocal holding, peak
        async with slots.hold(i):
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(work(i) for i in range(20)))
    assert peak == 3


async def test_a_cancelled_waiter_takes_no_slot_and_loses_none() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(0)
    waiter = asyncio.create_task(slots.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.release()
    # the slot is free again: a new holder gets it at once
    await asyncio.wait_for(slots.acquire(2), 1)


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        PrioritySlots(0)
