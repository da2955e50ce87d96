"""Consumer of the reservation context's `ReservationCancelled`: refund the reservation's payment, once.

The inbox record and the refund share one transaction (the use case's unit of work runs as a
savepoint on the consumer's connection), so a redelivered or republished event finds its id
in the inbox and has no second effect, and a crash between them leaves neither. An unknown
reservation, a declined payment or an already refunded one is a no-op: the event is acked.
"""

from __future__ import annotations

import dataclasses
import logging

import asyncpg
from google.protobuf.message import Message
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.reservation.v1.events_pb2 import ReservationCancelled
from services.kit.events import inbox
from services.kit.events.attribution import actor_of
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.payment.adapters.store import PgUnitOfWork
from services.payment.service_layer.payments import (
    PaymentDependencies,
    RefundForCancelledReservation,
    refund_for_cancelled_reservation,
)
from services.payment.service_layer.ports import UnitOfWork

log = logging.getLogger(__name__)

DURABLE = "payment"
CONTEXT = "reservation"
SUBJECT = "cinema.reservation.cancelled"


class ReservationCancelledHandler:
    """The handler the EventConsumer calls with each envelope and its decoded event."""

    def __init__(self, pool: asyncpg.Pool, deps: PaymentDependencies, consumer: str = DURABLE) -> None:
        self._pool = pool
        self._deps = deps
        self._consumer = consumer

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        if not isinstance(event, ReservationCancelled):
            log.info("ignoring %s: not a ReservationCancelled", envelope.type, extra={"event_id": envelope.id})
            return
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.first_delivery(conn, self._consumer, envelope.id, envelope.type):
                log.info("event already handled", extra={"event_id": envelope.id})
                return

            def in_this_transaction() -> UnitOfWork:
                return PgUnitOfWork(connection=conn)

            result = await refund_for_cancelled_reservation(
                RefundForCancelledReservation(event.reservation_id, event.customer_email, actor_of(event.cancelled_by)),
                dataclasses.replace(self._deps, uow=in_this_transaction),
            )
        log.info(
            "reservation cancelled: refund %s",
            result.outcome.value.lower(),
            extra={
                "event_id": envelope.id,
                "reservation_id": event.reservation_id,
                "payment_id": result.payment.id if result.payment else "",
                "outcome": result.outcome.value,
            },
        )


def consumer_settings() -> ConsumerSettings:
    return ConsumerSettings(durable=DURABLE, context=CONTEXT, subjects=[SUBJECT])


def reservation_cancelled_consumer(
    js: JetStreamContext, pool: asyncpg.Pool, deps: PaymentDependencies
) -> EventConsumer:
    return EventConsumer(js, consumer_settings(), ReservationCancelledHandler(pool, deps))
