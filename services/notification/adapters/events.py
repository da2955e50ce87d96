"""Booking and payment events (protobuf) as the domain's `EventFacts`; protobuf stops here.

Who caused a cancellation or a refund comes from the event's `cancelled_by`; an event written
before events carried it reads with no actor (see model.classify_cancellation for what then).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.money_pb2 import Money as MoneyProto
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.payment.v1.events_pb2 import PaymentRefunded
from cinema.reservation.v1.events_pb2 import ReservationCancelled, ReservationConfirmed
from services.kit.events.attribution import actor_of
from services.notification.domain.model import EventFacts, EventKind, Money, ReservationFacts

CONSUMED_TYPES = tuple(
    cls.DESCRIPTOR.full_name for cls in (ReservationConfirmed, ReservationCancelled, PaymentRefunded)
)


def _money(amount: MoneyProto, present: bool) -> Money | None:
    return Money(amount.minor_units, amount.currency_code) if present else None


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def facts_of(envelope: EventEnvelope, event: Message) -> EventFacts | None:
    """The facts of a consumed event; None for an event type this service does not notify about."""
    if isinstance(event, ReservationConfirmed):
        return EventFacts(
            event_id=envelope.id,
            event_type=envelope.type,
            kind=EventKind.RESERVATION_CONFIRMED,
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            reservation=ReservationFacts(
                movie_title=event.movie_title,
                starts_at=_time(event.start_time, event.HasField("start_time")),
                hall=event.hall,
                seats=tuple(event.seats),
            ),
            amount=_money(event.amount, event.HasField("amount")),
        )
    if isinstance(event, ReservationCancelled):
        return EventFacts(
            event_id=envelope.id,
            event_type=envelope.type,
            kind=EventKind.RESERVATION_CANCELLED,
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            reservation=ReservationFacts(
                movie_title=event.movie_title,
                starts_at=_time(event.start_time, event.HasField("start_time")),
                seats=tuple(event.seats),
            ),
            amount=_money(event.amount, event.HasField("amount")),
            reason=event.reason,
            actor=actor_of(event.cancelled_by),
        )
    if isinstance(event, PaymentRefunded):
        return EventFacts(
            event_id=envelope.id,
            event_type=envelope.type,
            kind=EventKind.PAYMENT_REFUNDED,
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            reservation=ReservationFacts(),
            amount=_money(event.amount, event.HasField("amount")),
            actor=actor_of(event.cancelled_by),
        )
    return None
