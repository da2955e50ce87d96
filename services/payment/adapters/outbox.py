"""The payment outbox: domain events become `cinema.payment.v1` protobuf events in the kit's envelope,
written to the `outbox` table in the unit of work's transaction (the relay publishes them).

Envelope: subject = the reservation id (the saga's correlation key), aggregate = the payment,
aggregate version = the payment's version after the change (1 for authorized/declined, 2 for
refunded), time = when it happened.
"""

from __future__ import annotations

import asyncpg
from google.protobuf.message import Message

from cinema.common.v1 import money_pb2
from cinema.payment.v1 import events_pb2
from services.kit.events import envelope as env
from services.kit.events import outbox
from services.kit.events.attribution import actor_message
from services.payment.domain.events import DomainEvent, PaymentAuthorized, PaymentDeclined, PaymentRefunded
from services.payment.domain.values import Money
from services.payment.service_layer.ports import PaymentRepository

SOURCE = "cinema/payment"


def money_message(money: Money) -> money_pb2.Money:
    return money_pb2.Money(minor_units=money.amount_minor, currency_code=money.currency)


def event_message(event: DomainEvent) -> Message:
    """The contract's message for a domain event (never anything of the card but its last four)."""
    if isinstance(event, PaymentAuthorized):
        return events_pb2.PaymentAuthorized(
            payment_id=event.payment_id,
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            amount=money_message(event.amount),
            card_last_four=event.card_last4,
        )
    if isinstance(event, PaymentDeclined):
        return events_pb2.PaymentDeclined(
            payment_id=event.payment_id,
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            amount=money_message(event.amount),
            decline_reason=event.decline_reason,
        )
    if isinstance(event, PaymentRefunded):
        message = events_pb2.PaymentRefunded(
            payment_id=event.payment_id,
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            amount=money_message(event.amount),
        )
        if event.cancelled_by is not None:
            message.cancelled_by.CopyFrom(actor_message(event.cancelled_by))
        return message
    raise TypeError(f"no contract for {type(event).__name__}")


class PgOutbox:
    """The `Outbox` port on the unit of work's connection."""

    def __init__(self, conn: asyncpg.Connection, payments: PaymentRepository, source: str = SOURCE) -> None:
        self._conn = conn
        self._payments = payments
        self._source = source

    def _version_of(self, payment_id: str) -> int:
        # The unit of work hands us the events of payments it has seen; their version is already
        # the one this transaction writes.
        for payment in self._payments.seen:
            if payment.id == payment_id:
                return payment.version
        raise LookupError(f"event of payment {payment_id}, which this unit of work has not seen")

    async def add(self, event: DomainEvent) -> None:
        envelope = env.wrap(
            event_message(event),
            source=self._source,
            subject=event.reservation_id,
            aggregate_id=event.payment_id,
            aggregate_version=self._version_of(event.payment_id),
            time=event.occurred_at,
        )
        await outbox.add(self._conn, envelope)
