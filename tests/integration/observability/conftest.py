"""Fixtures of the observability tests: a real Jaeger, and the whole system exporting to it.

`jaeger_server` starts the pinned Jaeger (`.tools/bin/jaeger`, built by scripts/bootstrap) on
free 127.0.0.1 ports with in-memory storage, once per session (`start_jaeger` is the helper,
for any test that wants its own). `observed_system` runs the six services as real processes
on real PostgreSQL, FerretDB, Redis and a NATS of its own, at DEBUG level, exporting spans to
that Jaeger; `booking_run` drives one full run through them and waits until every event was
handled. The test modules read what the run left behind: traces, metrics, logs.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from scripts.observability import jaeger
from scripts.stack.process import ManagedProcess, free_port
from scripts.stack.stores import scratch_dir
from tests.integration.observability.system import BookingRun, ObservedSystem, Stores, booking_run
from tests.support.servers import Server, create_database, start_nats


@dataclass
class JaegerServer:
    spec: jaeger.JaegerSpec
    process: ManagedProcess

    @property
    def query(self) -> jaeger.JaegerQuery:
        return jaeger.JaegerQuery(self.spec.ui_url)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.spec.root, ignore_errors=True)


def start_jaeger() -> JaegerServer:
    """A Jaeger on free ports, in memory, ready to receive OTLP and answer queries."""
    root = scratch_dir("jaeger")
    spec = jaeger.JaegerSpec(
        root,
        otlp_grpc_port=free_port(),
        otlp_http_port=free_port(),
        query_port=free_port(),
        query_grpc_port=free_port(),
    )
    process = jaeger.process(spec, root / "jaeger.log")
    process.start()
    process.wait_ready(60)
    return JaegerServer(spec, process)


@pytest.fixture(scope="session")
def jaeger_server() -> Iterator[JaegerServer]:
    server = start_jaeger()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def observability_nats() -> Iterator[Server]:
    """A NATS of these tests' own: the consumers replay whole streams, not other tests' events."""
    server = start_nats()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
async def observed_system(
    jaeger_server: JaegerServer,
    postgres_server: Server,
    mongo_server: Server,
    redis_server: Server,
    observability_nats: Server,
) -> AsyncIterator[ObservedSystem]:
    async def database(prefix: str) -> str:
        return await create_database(postgres_server, prefix)

    stores = Stores(
        postgres_url=database,
        mongo_url=mongo_server.url,
        mongo_prefix=str(mongo_server.extra.get("db_prefix", "")),
        redis_url=redis_server.url,
        nats_url=observability_nats.url,
    )
    root = scratch_dir("observed")
    try:
        system = await ObservedSystem.start(root, stores, jaeger_server.spec)
        try:
            yield system
        finally:
            await system.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def run(observed_system: ObservedSystem) -> BookingRun:
    return await booking_run(observed_system)
