"""Composition root of the movie service: the one place that builds adapters and wires them
into the catalog's use cases.

`MovieApp(settings)` owns everything the process runs besides the gRPC server:
- start: the MongoDB client and the indexes (idempotent), the deletion sweeper, and (in the
  background, so the catalog serves while NATS is down) NATS with reconnect-forever, the
  streams, one document-outbox relay per collection with events (movies, screenings) and the
  review-event consumer;
- stop: the reverse, after the kit has drained the gRPC server.
`app.host()` is the kit's ServiceHost around it; `main()` runs it until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import grpc.aio
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.kit.events.connection import connect_forever, ensure_streams_forever
from services.kit.events.consumer import EventConsumer
from services.kit.events.doc_outbox import DocRelaySettings, DocumentOutboxRelay
from services.kit.server import ServiceHost
from services.movie.adapters import grpc_api, mongo
from services.movie.entrypoints.review_consumer import review_consumer
from services.movie.entrypoints.sweeper import DeletionSweeper
from services.movie.service_layer.dependencies import CatalogDependencies
from services.movie.settings import MovieSettings

log = logging.getLogger(__name__)

SERVICE = "movie"
STOP_TIMEOUT_S = 3.0


class UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def mongo_client(settings: MovieSettings) -> AsyncMongoClient[Mapping[str, Any]]:
    # One connection by default: see MOVIE_MONGO_MAX_POOL_SIZE (FerretDB v1 loses concurrent updates).
    return AsyncMongoClient(
        settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000, maxPoolSize=settings.mongo_max_pool_size
    )


async def migrate(settings: MovieSettings) -> None:
    """Create the indexes (idempotent) and exit: `python -m services.movie migrate`."""
    client = mongo_client(settings)
    try:
        await mongo.ensure_indexes(client[settings.mongo_database])
    finally:
        await client.close()


class MovieApp:
    def __init__(self, settings: MovieSettings) -> None:
        self.settings = settings
        self._client: AsyncMongoClient[Mapping[str, Any]] | None = None
        self._deps: CatalogDependencies | None = None
        self._nats: NATS | None = None
        self._relays: list[DocumentOutboxRelay] = []
        self._consumer: EventConsumer | None = None
        self._sweeper: DeletionSweeper | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._events_ready = asyncio.Event()

    @property
    def deps(self) -> CatalogDependencies:
        if self._deps is None:
            raise RuntimeError("the movie app is not started")
        return self._deps

    @property
    def db(self) -> AsyncDatabase[Mapping[str, Any]]:
        if self._client is None:
            raise RuntimeError("the movie app is not started")
        return self._client[self.settings.mongo_database]

    async def wait_events_ready(self, timeout_s: float = 30.0) -> None:
        """Until NATS is connected and the relays and the review consumer run (for tests and probes)."""
        await asyncio.wait_for(self._events_ready.wait(), timeout_s)

    def _wake_relays(self) -> None:
        for relay in self._relays:
            relay.wake()

    async def start(self) -> None:
        s = self.settings
        self._client = mongo_client(s)
        db = self._client[s.mongo_database]
        await mongo.ensure_indexes(db)
        self._deps = CatalogDependencies(
            movies=mongo.MongoMovies(db),
            screenings=mongo.MongoScreenings(db),
            halls=mongo.MongoHalls(db),
            clock=UtcClock(),
            cleaning_gap=s.cleaning_gap,
            claim_timeout=s.claim_timeout,
            time_zone=s.zone,
            events_written=self._wake_relays,
        )
        self._sweeper = DeletionSweeper(self._deps, s.sweep_interval_s)
        self._tasks.append(asyncio.create_task(self._sweeper.run(), name="deletion-sweeper"))
        self._tasks.append(asyncio.create_task(self._run_events(), name="events"))

    def register(self, server: grpc.aio.Server) -> list[str]:
        return grpc_api.register(server, self.deps)

    async def _run_events(self) -> None:
        self._nats = await connect_forever(self.settings.nats_url, self.settings.service_name, logger=log)
        js: JetStreamContext = self._nats.jetstream()
        await ensure_streams_forever(js, logger=log)
        relay_settings = DocRelaySettings(service=SERVICE, poll_interval_s=self.settings.relay_poll_s)
        self._relays = [
            DocumentOutboxRelay(self.db, collection, js, relay_settings)
            for collection in (mongo.MOVIES, mongo.SCREENINGS)
        ]
        self._consumer = review_consumer(js, self.deps)
        log.info("events running", extra={"nats_url": self.settings.nats_url})
        self._events_ready.set()
        await asyncio.gather(*(relay.run() for relay in self._relays), self._consumer.run())

    async def stop(self) -> None:
        """Stop the loops, then close NATS and the MongoDB client. Safe if start failed."""
        if self._sweeper is not None:
            self._sweeper.stop()
        for relay in self._relays:
            relay.stop()
        if self._consumer is not None:
            self._consumer.stop()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nats.close(), timeout=STOP_TIMEOUT_S)
            self._nats = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    def host(self) -> ServiceHost:
        return ServiceHost(
            self.settings,
            self.register,
            public_methods=grpc_api.PUBLIC_METHODS,
            on_startup=[self.start],
            on_shutdown=[self.stop],
        )


def main() -> None:
    from services.kit.server import run_service

    settings = MovieSettings()
    app = MovieApp(settings)
    run_service(
        settings,
        app.register,
        public_methods=grpc_api.PUBLIC_METHODS,
        on_startup=[app.start],
        on_shutdown=[app.stop],
    )
