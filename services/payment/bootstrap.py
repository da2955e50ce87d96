"""Composition root of the payment service: the one place that knows which adapter serves which port.

`PaymentApp` owns the process's resources. `start()` migrates the database, opens the pool and
starts the event side in the background: NATS (reconnecting forever), the streams, the outbox
relay and the ReservationCancelled consumer. The event side never holds up the gRPC server:
with NATS down, payments are still authorized and their events wait in the outbox. `stop()`
stops the relay and the consumer, closes NATS and the pool. `host()` wraps it all in the kit's
ServiceHost (hooks run before serving and after draining).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import grpc.aio
from nats.aio.client import Client as NATS

from services.kit import pg
from services.kit.events.connection import connect_forever, ensure_streams_forever
from services.kit.events.consumer import EventConsumer
from services.kit.events.outbox import OutboxRelay, RelaySettings
from services.kit.server import ServiceHost
from services.payment.adapters import grpc_api
from services.payment.adapters.clock import SystemClock
from services.payment.adapters.processor import PgProcessorLedger, SimulatedCardProcessor
from services.payment.adapters.store import PgUnitOfWork, migrate
from services.payment.entrypoints.reservation_events import reservation_cancelled_consumer
from services.payment.service_layer.payments import PaymentDependencies
from services.payment.service_layer.ports import CardProcessor, Clock, UnitOfWork
from services.payment.settings import PaymentSettings

log = logging.getLogger(__name__)

SERVICE = "payment"
STOP_TIMEOUT_S = 10.0


def processor_from(settings: PaymentSettings) -> SimulatedCardProcessor:
    return SimulatedCardProcessor(
        latency_ms=settings.processor_latency_ms,
        jitter_ms=settings.processor_latency_jitter_ms,
        failure_rate=settings.processor_failure_rate,
    )


class PaymentApp:
    def __init__(
        self,
        settings: PaymentSettings,
        *,
        processor: CardProcessor | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor or processor_from(settings)
        self.clock = clock or SystemClock()
        self.pool: asyncpg.Pool | None = None
        self.nats: NATS | None = None
        self.relay: OutboxRelay | None = None
        self.consumer: EventConsumer | None = None
        self._events_task: asyncio.Task[None] | None = None
        self.events_ready = asyncio.Event()  # set once the relay and the consumer run
        self._closing = False

    @property
    def deps(self) -> PaymentDependencies:
        pool = self.pool
        if pool is None:
            raise RuntimeError("the payment app is not started")

        def unit_of_work() -> UnitOfWork:
            return PgUnitOfWork(pool)

        return PaymentDependencies(
            uow=unit_of_work,
            processor=self.processor,
            clock=self.clock,
            retry_after_s=self.settings.retry_after_s,
            authorization_limit_s=self.settings.authorization_limit_s,
        )

    async def start(self) -> None:
        applied = await migrate(self.settings.database_url)
        log.info("payment database migrated", extra={"applied": applied})
        self.pool = await pg.create_pool(
            self.settings.database_url, min_size=self.settings.db_pool_min, max_size=self.settings.db_pool_max
        )
        if isinstance(self.processor, SimulatedCardProcessor):
            # Every payment instance asks one (simulated) processor, as it would a real one.
            self.processor.use_ledger(PgProcessorLedger(self.pool))
        self._events_task = asyncio.create_task(self._run_events(), name="payment-events")

    def register(self, server: grpc.aio.Server) -> list[str]:
        return grpc_api.register(server, self.deps)

    async def _connect_nats(self) -> NATS:
        nc = NATS()
        self.nats = nc  # before connecting, so that stop() closes it while it is still trying
        return await connect_forever(
            self.settings.nats_url,
            f"{SERVICE}-{self.settings.service_version}",
            client=nc,
            closing=lambda: self._closing,
            logger=log,
        )

    async def _run_events(self) -> None:
        assert self.pool is not None
        nc = await self._connect_nats()
        js = nc.jetstream()
        await ensure_streams_forever(js, logger=log)
        self.relay = OutboxRelay(self.pool, js, RelaySettings(service=SERVICE))
        self.consumer = reservation_cancelled_consumer(js, self.pool, self.deps)
        self.events_ready.set()
        log.info("payment events running", extra={"nats": self.settings.nats_url})
        await asyncio.gather(self.relay.run(), self.consumer.run())

    async def stop(self) -> None:
        """Stop relay and consumer, close NATS and the pool; tolerates a half-done start."""
        self._closing = True
        if self.relay is not None:
            self.relay.stop()
        if self.consumer is not None:
            self.consumer.stop()
        task, self._events_task = self._events_task, None
        if task is not None:
            if not self.events_ready.is_set():
                task.cancel()  # still connecting: nothing to finish
            try:
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("payment events stopped with an error")
        nc, self.nats = self.nats, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()
        log.info("payment resources closed")

    def host(self) -> ServiceHost:
        """A ServiceHost serving this app: start before serving, stop after draining."""
        return ServiceHost(self.settings, self.register, on_startup=[self.start], on_shutdown=[self.stop])
