"""Fixtures of the fuzz tests: the whole system as real processes, seeded, once per package."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from scripts.stack.paths import REPO
from scripts.stack.services import Identity
from scripts.stack.stores import scratch_dir
from tests.fuzz.system import FuzzSystem, seed, smtp_sink, start_services, stop_services
from tests.support.servers import Server, create_database, start_nats

# Hypothesis keeps no example database here (settings: database=None), but it caches what it
# learns of the code under test in its home folder: keep that out of the work tree's status.
set_hypothesis_home_dir(str(REPO / ".pytest_cache" / "hypothesis"))


@pytest.fixture(scope="package")
async def fuzz_system(postgres_server: Server, mongo_server: Server, redis_server: Server) -> AsyncIterator[FuzzSystem]:
    root = scratch_dir("fuzz")
    nats = await asyncio.to_thread(start_nats)  # its own: the fuzz events disturb no other test
    sink, smtp_port = smtp_sink(root)
    sink.start()
    system: FuzzSystem | None = None
    try:
        await asyncio.to_thread(sink.wait_ready, 30)
        identity = Identity(root)
        databases = [
            await create_database(postgres_server, name) for name in ("reservation", "payment", "notification")
        ]
        system = await asyncio.to_thread(
            start_services,
            root,
            identity,
            reservation_db=databases[0],
            payment_db=databases[1],
            notification_db=databases[2],
            mongo_url=mongo_server.url,
            mongo_prefix=str(mongo_server.extra.get("db_prefix", "")),
            redis_url=redis_server.url,
            nats_url=nats.url,
            smtp_port=smtp_port,
        )
        await seed(system)
        yield system
    finally:
        if system is not None:
            await asyncio.to_thread(stop_services, system)
        sink.stop()
        nats.cleanup()
        shutil.rmtree(root, ignore_errors=True)
