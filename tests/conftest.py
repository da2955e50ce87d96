"""Session fixtures: real throwaway servers, started lazily (only by tests that need them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.servers import (
    Server,
    create_database,
    start_mongo,
    start_nats,
    start_postgres,
    start_redis,
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    server = start_postgres()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[Server]:
    server = start_mongo()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[Server]:
    server = start_nats()
    yield server
    server.cleanup()


@pytest.fixture
async def pg_database(postgres_server: Server) -> AsyncIterator[str]:
    """The URL of a fresh, empty PostgreSQL database for one test."""
    yield await create_database(postgres_server, "test")
