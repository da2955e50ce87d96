"""Idle is idle: with nothing happening, FerretDB, NATS and the two services that keep their
aggregates (and their outbox) in documents, movie and review, cost next to no CPU, and that
cost does not grow with the number of documents.

Their periodic work used to read whole collections (the outbox relays' poll for documents with
pending events, the deletion sweep): FerretDB v1's SQLite backend answers any filter but
`{_id}` by decoding every document, so the stack burnt 0.35-0.61 of a core doing nothing, more
as the catalog grew. Now the relays are woken by their own writes, and the slow safety poll and
the sweep read small collections of marks (O(pending)).

The test measures the real processes (their CPU time from /proc, through the benchmark's own
sampler, scripts.bench.idle) with a small catalog, then with ten times as many documents, each
time after restarting the services (so that their start-up scans met the documents) and once
their relays report having finished that scan. The bounds are generous: they tell "idle" from
"polls the collections", not one machine from another.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from scripts.bench.idle import format_table, measure_idle
from scripts.stack import stores
from scripts.stack.process import free_port
from scripts.stack.stores import scratch_dir
from services.kit.testing_tokens import LocalTokenIssuer
from services.movie.adapters import mongo as movie_mongo
from tests.integration.reservation.processes import ServiceProcess
from tests.support.idle_catalog import SCREENINGS_PER_MOVIE, add_catalog
from tests.support.servers import Server

pytestmark = pytest.mark.integration

Document = Mapping[str, Any]

WINDOW_S = 20.0
SMALL_MOVIES = 60
GROWTH = 10
IDLE_BOUND_CORES = 0.1  # generous: the target for the whole stack is 0.05
GROWTH_ALLOWANCE_CORES = 0.03


@pytest.fixture
def ferretdb() -> Iterator[Server]:
    """A FerretDB of this test's own, so that its CPU is this test's alone (never MONGO_URL:
    the cost measured is FerretDB's)."""
    root = scratch_dir("idle-ferretdb")
    port = free_port()
    proc = stores.ferretdb_process(root / "data", port, root / "ferretdb.log")
    proc.start()
    try:
        proc.wait_ready(60)
        yield Server("mongo", stores.mongo_url(port), proc, root)
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nats() -> Iterator[Server]:
    root = scratch_dir("idle-nats")
    spec = stores.NatsSpec(root / "data", free_port(), free_port())
    proc = stores.nats_process(spec, root / "nats.log")
    proc.start()
    try:
        proc.wait_ready(60)
        yield Server("nats", spec.url, proc, root)
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def client(ferretdb: Server) -> AsyncIterator[AsyncMongoClient[Document]]:
    c: AsyncMongoClient[Document] = AsyncMongoClient(ferretdb.url, tz_aware=True)
    yield c
    await c.close()


def service_env(name: str, mongo_url: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path) -> dict[str, str]:
    prefix = name.upper()
    # The relays' and the sweeper's intervals are left at their defaults: what is measured is
    # the configuration `make up` runs.
    return {
        f"{prefix}_MONGO_URL": mongo_url,
        f"{prefix}_MONGO_DATABASE": name,
        f"{prefix}_NATS_URL": nats_url,
        f"{prefix}_GRPC_PORT": str(free_port()),
        f"{prefix}_METRICS_PORT": str(free_port()),
        f"{prefix}_JWKS_SOURCE": str(jwks),
        f"{prefix}_JWT_ISSUER": issuer.issuer,
        f"{prefix}_JWT_AUDIENCE": issuer.audience,
        f"{prefix}_DRAIN_S": "0.2",
        f"{prefix}_SHUTDOWN_GRACE_S": "2",
    }


# The series each relay sets once its start-up scan has read its collection.
SCANNED = {
    "movie": [re.compile(r'cinema_outbox_backlog\{[^}]*outbox="movies"'),
              re.compile(r'cinema_outbox_backlog\{[^}]*outbox="screenings"')],
    "review": [re.compile(r'cinema_outbox_backlog\{[^}]*outbox="reviews"')],
}  # fmt: skip


async def wait_until_settled(name: str, env: Mapping[str, str], within_s: float = 120.0) -> None:
    """Until the service's relays have finished their start-up scan (their backlog series exist)."""
    url = f"http://127.0.0.1:{env[f'{name.upper()}_METRICS_PORT']}/metrics"
    deadline = asyncio.get_running_loop().time() + within_s
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                text = (await http.get(url)).text
                if all(p.search(text) for p in SCANNED[name]):
                    return
            except httpx.HTTPError:
                pass
            assert asyncio.get_running_loop().time() < deadline, (
                f"{name}: the relays did not finish their start-up scan"
            )
            await asyncio.sleep(0.5)


async def idle_cost(ferretdb: Server, nats: Server, tmp_path: Path) -> dict[str, Any]:
    """Start movie and review, let them settle, measure the idle window, stop them."""
    issuer = LocalTokenIssuer()
    jwks = issuer.write_jwks(tmp_path / f"jwks-{uuid.uuid4().hex[:6]}.json")
    envs = {name: service_env(name, ferretdb.url, nats.url, issuer, jwks) for name in ("movie", "review")}
    processes: dict[str, ServiceProcess] = {}
    try:
        for name, env in envs.items():
            processes[name] = await ServiceProcess.start(name, env)
        for name, env in envs.items():
            await wait_until_settled(name, env)
        await asyncio.sleep(2.0)  # whatever the start-up set going (a first sweep, first fetches) ends

        def pids() -> dict[str, int]:
            found = {
                "ferretdb": ferretdb.process.pid if ferretdb.process else None,
                "nats": nats.process.pid if nats.process else None,
            }
            found |= {name: p.process.pid if p.process else None for name, p in processes.items()}
            return {name: pid for name, pid in found.items() if pid is not None}

        result = await measure_idle(pids, WINDOW_S)
    finally:
        for process in processes.values():
            try:
                await process.terminate()
            finally:
                await process.close()
    print(format_table(result))
    return result


async def test_idle_cost_does_not_grow_with_the_number_of_documents(
    ferretdb: Server, nats: Server, client: AsyncMongoClient[Document], tmp_path: Path
) -> None:
    await add_catalog(client, SMALL_MOVIES)
    small = await idle_cost(ferretdb, nats, tmp_path)

    await add_catalog(client, SMALL_MOVIES * (GROWTH - 1))
    assert await client["movie"][movie_mongo.SCREENINGS].count_documents({}) == (
        SMALL_MOVIES * GROWTH * SCREENINGS_PER_MOVIE
    )
    large = await idle_cost(ferretdb, nats, tmp_path)

    small_cores, large_cores = small["total"]["cpu_cores"], large["total"]["cpu_cores"]
    assert small_cores < IDLE_BOUND_CORES, f"idle with the small catalog: {small['processes']}"
    assert large_cores < IDLE_BOUND_CORES, f"idle with {GROWTH}x the catalog: {large['processes']}"
    assert large_cores <= small_cores + GROWTH_ALLOWANCE_CORES, (
        f"idle cost grew with the documents: {small_cores:.3f} -> {large_cores:.3f} cores\n"
        f"small: {small['processes']}\nlarge: {large['processes']}"
    )
