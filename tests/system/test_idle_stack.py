"""The whole local system (`make up`, in a scratch folder) is idle when nothing happens, and stays
so with ten times the benchmark's catalog: every process of the stack (PostgreSQL backends, the
stores, Envoy, Jaeger, the services) measured from /proc by scripts.bench.idle.

Issue 14's target is 0.05 of a core; the bound here is twice that, and the catalog may add at
most 0.03 of a core: what the test tells apart is "idle" from "polls the collections" (the
document outbox relays' old poll made FerretDB's cost grow with every document: 0.02 of a core
with the demo catalog, 0.31 with the benchmark's, 0.86 with ten times that). The documents go
straight into the stack's FerretDB while it runs, as a catalog grows under a running system.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from scripts.bench.idle import format_table, measure_idle
from scripts.stack import stores
from tests.support.idle_catalog import add_catalog
from tests.support.scratch_stack import ScratchStack, scratch_stack

pytestmark = pytest.mark.integration

WINDOW_S = 20.0
SETTLE_S = 10.0  # after `up`: the demo catalog's events reach every consumer
BENCH_MOVIES = 64  # the benchmark's catalog: 64 movies, ~10 screenings each
BOUND_CORES = 0.1
GROWTH_ALLOWANCE_CORES = 0.03


def stack_pids(stack: ScratchStack) -> dict[str, int]:
    state = json.loads((stack.data / "run" / "state.json").read_text())
    return {c["name"]: c["pid"] for c in state["components"] if isinstance(c.get("pid"), int)}


async def test_the_whole_stack_is_idle_also_with_ten_times_the_catalog() -> None:
    # make up's default: two instances of every service (movie one on FerretDB)
    with scratch_stack("idle", ScratchStack, {"CINEMA_INSTANCES": "2"}) as stack:
        mongo_url = stores.mongo_url(stack.port("CINEMA_MONGO_PORT"))
        await asyncio.sleep(SETTLE_S)
        small = await measure_idle(lambda: stack_pids(stack), WINDOW_S)
        print(format_table(small))
        client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        try:
            await add_catalog(client, BENCH_MOVIES * 10)
        finally:
            await client.close()
        await asyncio.sleep(SETTLE_S / 2)
        large = await measure_idle(lambda: stack_pids(stack), WINDOW_S)
        print(format_table(large))
    small_cores, large_cores = small["total"]["cpu_cores"], large["total"]["cpu_cores"]
    assert small_cores < BOUND_CORES, f"idle stack: {small['processes']}"
    assert large_cores < BOUND_CORES, f"idle stack with ten times the catalog: {large['processes']}"
    assert large_cores <= small_cores + GROWTH_ALLOWANCE_CORES, (
        f"idle cost grew with the catalog: {small_cores:.3f} -> {large_cores:.3f} cores\n"
        f"before: {small['processes']}\nafter: {large['processes']}"
    )
