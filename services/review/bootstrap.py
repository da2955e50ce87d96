"""Composition root of the review service: the one place that builds adapters and wires them
into the review use cases.

`ReviewApp(settings)` owns everything the process runs besides the gRPC server:
- start: the MongoDB client, the indexes (idempotent), the store, and (in the background, so
  reviews are served while NATS is down) NATS with reconnect-forever, the streams, the
  document outbox relay and the consumer of movie events that keeps review's replica of the
  catalog (a review is accepted only for a movie it knows);
- stop: the reverse, after the kit has drained the gRPC server.
The service calls no other service: it works while the movie service is down (on the catalog
as its replica last saw it).
`app.host()` is the kit's ServiceHost around it; `main()` runs it until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
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
from services.review.adapters import grpc_api
from services.review.adapters.catalog import MongoMovieCatalog
from services.review.adapters.clock import MillisecondClock
from services.review.adapters.mongo import COLLECTION, MongoReviewRepository, ensure_indexes
from services.review.entrypoints.movie_events import movie_consumer
from services.review.service_layer.reviews import ReviewDependencies
from services.review.settings import ReviewSettings

log = logging.getLogger(__name__)

SERVICE = "review"
STOP_TIMEOUT_S = 5.0

Document = Mapping[str, Any]


def mongo_client(settings: ReviewSettings) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        settings.mongo_url,
        tz_aware=True,
        appname=settings.service_name,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
    )


async def migrate(settings: ReviewSettings) -> list[str]:
    """Create the indexes (idempotent): `python -m services.review migrate`."""
    client = mongo_client(settings)
    try:
        return await ensure_indexes(client[settings.mongo_database])
    finally:
        await client.close()


class RelaySignal:
    """OutboxSignal port: wakes the relay once it runs (before that, it finds the events itself)."""

    def __init__(self) -> None:
        self.relay: DocumentOutboxRelay | None = None

    def wake(self) -> None:
        if self.relay is not None:
            self.relay.wake()


class ReviewApp:
    def __init__(self, settings: ReviewSettings, *, client: AsyncMongoClient[Document] | None = None) -> None:
        """`client`: a MongoDB client to use instead of one built from the settings (tests pass
        one with command listeners); the app does not close a client it was given."""
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._db: AsyncDatabase[Document] | None = None
        self._deps: ReviewDependencies | None = None
        self._signal = RelaySignal()
        self._nats: NATS | None = None
        self._relay: DocumentOutboxRelay | None = None
        self._movies: EventConsumer | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._events_ready = asyncio.Event()
        self._closing = False

    @property
    def deps(self) -> ReviewDependencies:
        if self._deps is None:
            raise RuntimeError("the review app is not started")
        return self._deps

    @property
    def db(self) -> AsyncDatabase[Document]:
        if self._db is None:
            raise RuntimeError("the review app is not started")
        return self._db

    @property
    def relay(self) -> DocumentOutboxRelay | None:
        return self._relay

    async def wait_events_ready(self, timeout_s: float = 30.0) -> None:
        """Until NATS is connected and the relay runs (for tests and probes)."""
        await asyncio.wait_for(self._events_ready.wait(), timeout_s)

    async def start(self) -> None:
        s = self.settings
        if self._client is None:
            self._client = mongo_client(s)
        self._db = self._client[s.mongo_database]
        indexes = await ensure_indexes(self._db)
        log.info("review indexes ensured", extra={"indexes": indexes, "database": s.mongo_database})
        self._deps = ReviewDependencies(
            reviews=MongoReviewRepository(self._db, retry_after_s=s.retry_after_s),
            clock=MillisecondClock(),
            outbox=self._signal,
            catalog=MongoMovieCatalog(self._db, retry_after_s=s.retry_after_s),
            retry_after_s=s.retry_after_s,
        )
        self._events_task = asyncio.create_task(self._run_events(), name="review-events")

    def register(self, server: grpc.aio.Server) -> list[str]:
        return grpc_api.register(server, self.deps)

    async def _connect_nats(self) -> NATS:
        nc = NATS()
        self._nats = nc  # before connecting, so that stop() closes it while it is still trying
        return await connect_forever(
            self.settings.nats_url,
            f"{SERVICE}-{self.settings.service_version}",
            client=nc,
            closing=lambda: self._closing,
            logger=log,
        )

    async def _run_events(self) -> None:
        nc = await self._connect_nats()
        js: JetStreamContext = nc.jetstream()
        await ensure_streams_forever(js, logger=log)
        self._relay = DocumentOutboxRelay(
            self.db,
            COLLECTION,
            js,
            DocRelaySettings(service=SERVICE, poll_interval_s=self.settings.relay_poll_interval_s),
        )
        self._signal.relay = self._relay
        self._movies = movie_consumer(js, self.deps.catalog)
        self._events_ready.set()
        log.info("review events running", extra={"nats_url": self.settings.nats_url})
        await asyncio.gather(self._relay.run(), self._movies.run())

    async def stop(self) -> None:
        """Stop the relay, close NATS and the MongoDB client. Safe if start failed half-way."""
        self._closing = True
        self._signal.relay = None
        if self._relay is not None:
            self._relay.stop()
        if self._movies is not None:
            self._movies.stop()
        task, self._events_task = self._events_task, None
        if task is not None:
            if not self._events_ready.is_set():
                task.cancel()  # still connecting: nothing to finish
            try:
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("review events stopped with an error")
        nc, self._nats = self._nats, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), timeout=3)
        client = self._client
        if client is not None and self._owns_client:
            self._client = None
            with contextlib.suppress(Exception):
                await client.close()
        log.info("review resources closed")

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

    settings = ReviewSettings()
    app = ReviewApp(settings)
    run_service(
        settings,
        app.register,
        public_methods=grpc_api.PUBLIC_METHODS,
        on_startup=[app.start],
        on_shutdown=[app.stop],
    )
