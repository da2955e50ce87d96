"""Composition root of the reservation service: the one place that builds adapters and wires
them into the booking use cases.

`ReservationApp(settings)` owns everything the process runs besides the gRPC server:
- start: migrations, the PostgreSQL pool, the payment channel, the reconciler loop, and (in
  the background, so booking serves while NATS is down) NATS with reconnect-forever, the
  streams, the outbox relay and the catalog consumer;
- stop: the reverse, after the kit has drained the gRPC server.
`app.host()` is the kit's ServiceHost around it; `main()` runs it until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc.aio
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from services.kit import pg
from services.kit.aio import PrioritySlots
from services.kit.events.connection import connect_forever, ensure_streams_forever
from services.kit.events.consumer import EventConsumer
from services.kit.events.outbox import OutboxRelay, RelaySettings
from services.kit.oauth_client import ClientCredentialsTokenSource
from services.kit.server import ServiceHost
from services.reservation.adapters import grpc_api
from services.reservation.adapters.payment import BearerTokenSource, GrpcPaymentGateway, TokenFile
from services.reservation.adapters.pg_views import PgScreeningReservations
from services.reservation.adapters.postgres import MIGRATIONS, PgUnitOfWorkFactory
from services.reservation.entrypoints.catalog_consumer import catalog_consumer
from services.reservation.entrypoints.reconciler_loop import ReconcilerLoop
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.settings import ReservationSettings

log = logging.getLogger(__name__)


class UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


async def migrate(settings: ReservationSettings) -> list[int]:
    """Apply the pending migrations (idempotent); returns the versions applied now."""
    return await pg.migrate(settings.database_url, MIGRATIONS)


class ReservationApp:
    def __init__(self, settings: ReservationSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._payments: GrpcPaymentGateway | None = None
        self._token_source: ClientCredentialsTokenSource | None = None
        self._deps: BookingDependencies | None = None
        self._nats: NATS | None = None
        self._relay: OutboxRelay | None = None
        self._consumer: EventConsumer | None = None
        self._reconciler: ReconcilerLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._events_ready = asyncio.Event()

    @property
    def deps(self) -> BookingDependencies:
        if self._deps is None:
            raise RuntimeError("the reservation app is not started")
        return self._deps

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the reservation app is not started")
        return self._pool

    @property
    def reconciler(self) -> ReconcilerLoop:
        if self._reconciler is None:
            raise RuntimeError("the reservation app is not started")
        return self._reconciler

    async def wait_events_ready(self, timeout_s: float = 30.0) -> None:
        """Until NATS is connected and the relay and catalog consumer run (for tests and probes)."""
        await asyncio.wait_for(self._events_ready.wait(), timeout_s)

    async def start(self) -> None:
        s = self.settings
        applied = await migrate(s)
        if applied:
            log.info("migrations applied", extra={"versions": applied})
        self._pool = await pg.create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
        tokens: BearerTokenSource
        if s.token_url:
            self._token_source = ClientCredentialsTokenSource(
                s.token_url, s.client_id, secret_file=Path(s.client_secret_file)
            )
            tokens = self._token_source
        else:
            if not s.payment_token_file:
                log.warning(
                    "neither RESERVATION_TOKEN_URL nor RESERVATION_PAYMENT_TOKEN_FILE is set: "
                    "payment will refuse our calls"
                )
            tokens = TokenFile(s.payment_token_file)
        self._payments = GrpcPaymentGateway(s.payment_address, tokens)
        self._deps = BookingDependencies(
            uow=PgUnitOfWorkFactory(self._pool),
            payments=self._payments,
            clock=UtcClock(),
            payment_deadline_s=s.payment_deadline_s,
            payment_wait_s=s.payment_wait_s,
            pending_window_s=s.pending_window_s,
            payment_work_limit_s=s.payment_work_limit_s,
            retry_after_s=s.retry_after_s,
            payment_slots=PrioritySlots(s.payment_concurrency),
            screening_reservations=PgScreeningReservations(self._pool),
        )
        self._reconciler = ReconcilerLoop(
            self._deps, s.reconciler_interval_s, s.reconciler_window_s, s.reconciler_batch
        )
        self._tasks.append(asyncio.create_task(self._reconciler.run(), name="reconciler"))
        self._tasks.append(asyncio.create_task(self._run_events(), name="events"))

    def register(self, server: grpc.aio.Server) -> list[str]:
        return grpc_api.register(server, self.deps)

    async def _run_events(self) -> None:
        self._nats = await connect_forever(self.settings.nats_url, self.settings.service_name, logger=log)
        js: JetStreamContext = self._nats.jetstream()
        await ensure_streams_forever(js, logger=log)
        self._relay = OutboxRelay(self.pool, js, RelaySettings(service="reservation"))
        self._consumer = catalog_consumer(js, self.pool, self.deps)
        log.info("events running", extra={"nats_url": self.settings.nats_url})
        self._events_ready.set()
        await asyncio.gather(self._relay.run(), self._consumer.run())

    async def stop(self) -> None:
        """Stop the loops, then close NATS, the payment channel and the pool. Safe if start failed."""
        if self._reconciler is not None:
            self._reconciler.stop()
        if self._relay is not None:
            self._relay.stop()
        if self._consumer is not None:
            self._consumer.stop()
        if self._tasks:
            # Give the loops a moment to finish their round, then cut them off.
            _done, pending = await asyncio.wait(self._tasks, timeout=3)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()
        if self._deps is not None:
            # Authorizations still running in the background: cut off; the reconciler (of
            # this or another instance) settles their reservations by payment's outcome.
            await self._deps.payments_in_progress.close()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nats.close(), timeout=3)
            self._nats = None
        if self._payments is not None:
            await self._payments.close()
            self._payments = None
        if self._token_source is not None:
            await self._token_source.close()
            self._token_source = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=5)
            self._pool = None

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

    settings = ReservationSettings()
    app = ReservationApp(settings)
    run_service(
        settings,
        app.register,
        public_methods=grpc_api.PUBLIC_METHODS,
        on_startup=[app.start],
        on_shutdown=[app.stop],
    )
