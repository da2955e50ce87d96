"""Consumer of the catalog's events: keeps the screening replica, cancels the reservations of a
cancelled screening.

A durable pull consumer `reservation` on the movie context's stream. Each event is handled in
one transaction holding both the inbox record and the effect (the use case's unit of work runs
nested in it, as a savepoint), so a redelivered event has no second effect; the use cases are
also order-safe by the envelope's aggregate_version, so a late older event changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging

import asyncpg
from google.protobuf.message import Message
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.events import inbox
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.kit.events.naming import parse_full_name
from services.reservation.adapters.catalog_events import CATALOG_EVENTS, translate
from services.reservation.adapters.postgres import PgUnitOfWork
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.ports import UnitOfWork

log = logging.getLogger(__name__)

DURABLE = "reservation"


def consumer_settings(durable: str = DURABLE) -> ConsumerSettings:
    return ConsumerSettings(
        durable=durable,
        context="movie",
        subjects=[parse_full_name(cls.DESCRIPTOR.full_name).subject for cls in CATALOG_EVENTS],
    )


class CatalogEventHandler:
    """The consumer's handler: inbox + use case in one transaction."""

    def __init__(self, pool: asyncpg.Pool, deps: BookingDependencies, durable: str = DURABLE) -> None:
        self._pool = pool
        self._deps = deps
        self._durable = durable

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        change = translate(envelope, event)
        if change is None:
            return  # a subject we do not follow (a wider filter): nothing to do
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.first_delivery(conn, self._durable, envelope.id, envelope.type):
                log.info("event %s (%s) already handled", envelope.id, envelope.type)
                return

            def nested_uow() -> UnitOfWork:
                return PgUnitOfWork(connection=conn)

            changed = await change.apply(dataclasses.replace(self._deps, uow=nested_uow))
        log.info(
            "catalog event %s (%s v%d) %s",
            envelope.id,
            envelope.type,
            envelope.aggregate_version,
            "applied" if changed else "was stale: no change",
        )


def catalog_consumer(
    js: JetStreamContext, pool: asyncpg.Pool, deps: BookingDependencies, durable: str = DURABLE
) -> EventConsumer:
    return EventConsumer(js, consumer_settings(durable), CatalogEventHandler(pool, deps, durable))
