"""The sellout on a busy machine (issue 14): a crowd races for the few seats of one screening.

The whole local system as `make up` runs it (a scratch folder, every port free), a mixed
background load from the benchmark's own workload, CPU burners taking the machine's cores, and
card authorizations slower than reservation's payment deadline, so that payment answers late.
Then 200 buyers race for 48 seats the way scripts/bench/sellout.py has people do it (another
seat on SEATS_TAKEN, the same request id again after UNAVAILABLE's hint, a new one after
PAYMENT_NOT_COMPLETED).

The bounds are generous on purpose: they tell "works" from "falls over" (a sale lost because
the machine was busy, a seat sold twice, a stack that stops selling), not a fast machine from a
slow one. The benchmark's own numbers come from `make bench` and `python -m scripts.bench.sellout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Iterator

import pytest

from scripts.bench.auth import acquire_tokens
from scripts.bench.catalog import seed_catalog, wait_until_propagated
from scripts.bench.openloop import OpenLoopRunner, Recorder, schedule
from scripts.bench.sellout import busy_cpu, describe_result, run_sellout
from scripts.bench.workload import DEFAULT_WEIGHTS, Workload
from tests.support.scratch_stack import ScratchStack, scratch_stack

pytestmark = pytest.mark.integration

SERVICES = ("reservation", "payment", "movie", "review", "notification", "viewpage")
BACKGROUND_RATE = 12.0  # arrivals per second of the default mix, during the whole race
TIME_LIMIT_S = 60.0


@pytest.fixture(scope="module")
def stack() -> Iterator[ScratchStack]:
    with pytest.MonkeyPatch.context() as env:
        # Card authorizations slower than reservation's 800 ms payment deadline (the simulated
        # processor's latency), on top of the busy CPU: the case in which sales used to be lost.
        env.setenv("PAYMENT_PROCESSOR_LATENCY_MS", "900")
        env.setenv("PAYMENT_PROCESSOR_LATENCY_JITTER_MS", "400")
        with scratch_stack("sellout", ScratchStack) as running:
            yield running


def store_urls(stack: ScratchStack) -> dict[str, str]:
    state = json.loads((stack.data / "run" / "state.json").read_text())
    return {str(c["name"]): str(c["url"]) for c in state["components"] if c.get("url")}


async def test_200_buyers_on_a_busy_machine_buy_all_48_seats_once_each(stack: ScratchStack) -> None:
    tag = uuid.uuid4().hex[:8]
    rng = random.Random(14)
    urls = store_urls(stack)
    tokens = await asyncio.to_thread(acquire_tokens, stack.data, urls, tag, 6)
    addresses = {s: f"127.0.0.1:{stack.port(f'CINEMA_{s.upper()}_PORT')}" for s in SERVICES}
    catalog = await seed_catalog(addresses["movie"], tokens.manager, tag, 3, 12, rng)
    await wait_until_propagated(catalog, addresses["reservation"], addresses["viewpage"], tokens.customers[0].metadata)

    workload = Workload(catalog, tokens, addresses, rng)
    recorder = Recorder()
    runner = OpenLoopRunner(workload.operations(), recorder, max_in_flight=300)
    arrivals = schedule(BACKGROUND_RATE, TIME_LIMIT_S + 120, DEFAULT_WEIGHTS, rng)
    try:
        with busy_cpu(processes=2):
            load = asyncio.create_task(runner.run(time.perf_counter(), arrivals))
            await asyncio.sleep(3)  # the background load and the burners are under way before the sale opens
            try:
                result = await run_sellout(
                    addresses,
                    tokens.manager,
                    tokens.customers,
                    buyers=200,
                    seats=48,
                    time_limit_s=TIME_LIMIT_S,
                    postgres_url=urls["postgres"],
                    rng=rng,
                    run_tag=tag,
                )
            finally:
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await load
                await runner.drain(15)
    finally:
        await workload.channels.close()

    print("\n" + "\n".join(describe_result(result)))
    print(f"  background mix ({BACKGROUND_RATE}/s): {recorder.ok_count} ok, {dict(recorder.errors_all_phases)}")
    store = result["store"]
    assert store is not None
    # Every seat sold, within the (generous) limit, and to one buyer only: by the answers and by
    # reservation's own tables.
    assert result["sold_twice"] == 0 and store["sold_twice"] == 0, result
    assert result["seats_sold_per_answers"] == 48, result
    assert store["seats_sold"] == 48 and store["seats_held"] == 48, store
    assert result["sold_out_s"] is not None and result["sold_out_s"] <= TIME_LIMIT_S, result
    # Nothing is left PENDING, and no sale was failed for a payment that was merely slow.
    assert "PENDING" not in store["reservations_by_state"], store
    assert "PAYMENT_NOT_COMPLETED" not in store["failed_by_reason"], store
    # How many buyers were refused on the way (UNAVAILABLE) is printed above, not asserted: it
    # depends on the admission limits' tuning and the machine; the benchmark holds the 5 % target.
