"""Composition root of the notification service: the one place that knows which adapter serves which port.

`NotificationApp.start()` migrates the delivery log, opens the pool and starts, in the
background, the event side (NATS reconnecting forever, the streams, the two consumers) and the
delivery loop. Neither holds up the gRPC server. `stop()` stops them, closes NATS and the pool.
`host()` wraps it all in the kit's ServiceHost. Several apps (replicas) may run against one
database and one NATS: they share the durable consumers and claim disjoint deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from zoneinfo import ZoneInfo

import asyncpg
import grpc.aio
from nats.aio.client import Client as NATS

from services.kit import pg
from services.kit.events.connection import connect_forever, ensure_streams_forever
from services.kit.events.consumer import EventConsumer
from services.kit.server import ServiceHost
from services.notification.adapters import grpc_api
from services.notification.adapters.smtp import SmtpSender, SmtpSettings
from services.notification.adapters.store import PgDeliveryLog, migrate
from services.notification.domain.model import RetryPolicy
from services.notification.entrypoints.consumers import NotificationEventHandler, notification_consumers
from services.notification.entrypoints.dispatcher import Dispatcher
from services.notification.service_layer.notifications import NotificationDependencies
from services.notification.service_layer.ports import DeliveryLog, MailSender
from services.notification.settings import NotificationSettings

log = logging.getLogger(__name__)

SERVICE = "notification"
STOP_TIMEOUT_S = 10.0


def smtp_sender(settings: NotificationSettings) -> SmtpSender:
    return SmtpSender(
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            timeout_s=settings.smtp_timeout_s,
            start_tls=settings.smtp_start_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
        )
    )


class NotificationApp:
    def __init__(
        self, settings: NotificationSettings, *, sender: MailSender | None = None, log_: DeliveryLog | None = None
    ) -> None:
        self.settings = settings
        self.sender = sender or smtp_sender(settings)
        self._log_override = log_
        self.pool: asyncpg.Pool | None = None
        self.nats: NATS | None = None
        self.consumers: list[EventConsumer] = []
        self.dispatcher: Dispatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.events_ready = asyncio.Event()
        self._closing = False

    @property
    def deps(self) -> NotificationDependencies:
        pool = self.pool
        if pool is None:
            raise RuntimeError("the notification app is not started")
        s = self.settings
        return NotificationDependencies(
            log=self._log_override or PgDeliveryLog(pool),
            sender=self.sender,
            retry=RetryPolicy(max_attempts=s.max_attempts, base_s=s.retry_base_s, max_s=s.retry_max_s),
            in_doubt=s.in_doubt,
            zone=ZoneInfo(s.display_timezone),
            message_id_domain=s.message_id_domain,
            lease_s=s.claim_lease_s,
        )

    async def start(self) -> None:
        applied = await migrate(self.settings.database_url)
        log.info("notification database migrated", extra={"applied": applied})
        self.pool = await pg.create_pool(
            self.settings.database_url, min_size=self.settings.db_pool_min, max_size=self.settings.db_pool_max
        )
        self.dispatcher = Dispatcher(
            self.deps, batch=self.settings.dispatch_batch, idle_s=self.settings.dispatch_idle_s
        )
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="notification-delivery"),
            asyncio.create_task(self._run_events(), name="notification-events"),
        ]

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
        assert self.dispatcher is not None
        nc = await self._connect_nats()
        js = nc.jetstream()
        await ensure_streams_forever(js, logger=log)
        handler = NotificationEventHandler(self.deps, self.dispatcher.wake)
        self.consumers = notification_consumers(js, handler, deliver_all=self.settings.deliver_all)
        self.events_ready.set()
        log.info("notification events running", extra={"nats": self.settings.nats_url})
        await asyncio.gather(*(c.run() for c in self.consumers))

    async def stop(self) -> None:
        """Stop consumers and the delivery loop, close NATS and the pool; tolerates a half-done start."""
        self._closing = True
        for consumer in self.consumers:
            consumer.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task.get_name() == "notification-events" and not self.events_ready.is_set():
                task.cancel()  # still connecting: nothing to finish
        for task in tasks:
            try:
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("notification task %s stopped with an error", task.get_name())
        if isinstance(self.sender, SmtpSender):
            await self.sender.close()
        nc, self.nats = self.nats, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()
        log.info("notification resources closed")

    def host(self) -> ServiceHost:
        return ServiceHost(self.settings, self.register, on_startup=[self.start], on_shutdown=[self.stop])
