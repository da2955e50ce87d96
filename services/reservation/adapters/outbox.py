"""The outbox adapter: booking's domain events as cinema.reservation.v1 protobuf events in the
kit's outbox table, inside the unit of work's transaction.

Each event travels in the kit envelope with subject = aggregate id = the reservation id (the
correlation key) and aggregate_version = the reservation's version right after the transition
that raised it, so consumers can ignore stale or replayed events per reservation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

import asyncpg
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.money_pb2 import Money as MoneyProto
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.reservation.v1 import events_pb2
from services.kit.events import envelope as kit_envelope
from services.kit.events import outbox as kit_outbox
from services.kit.events.attribution import actor_message
from services.reservation.domain.events import (
    DomainEvent,
    ReservationCancelled,
    ReservationConfirmed,
    ReservationFailed,
)
from services.reservation.domain.values import Money, SeatLabel

SOURCE = "//cinema/reservation"


class VersionSource(Protocol):
    def loaded_version(self, reservation_id: str) -> int: ...


def money_proto(money: Money) -> MoneyProto:
    return MoneyProto(minor_units=money.amount_minor, currency_code=money.currency)


def timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _labels(seats: Iterable[SeatLabel]) -> list[str]:
    return [str(seat) for seat in seats]


def event_message(event: DomainEvent) -> Message:
    """The wire message of a domain event (protos/cinema/reservation/v1/events.proto)."""
    if isinstance(event, ReservationConfirmed):
        return events_pb2.ReservationConfirmed(
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            screening_id=event.screening_id,
            movie_id=event.screening.movie_id,
            movie_title=event.screening.movie_title,
            hall=event.screening.hall,
            start_time=timestamp(event.screening.starts_at),
            seats=_labels(event.seats),
            amount=money_proto(event.amount),
            payment_id=event.payment_id,
        )
    if isinstance(event, ReservationCancelled):
        # A refund-only cancellation (late payment voided) has no field of its own on the wire:
        # its actor (the system, cause PAYMENT_APPROVED_AFTER_RESERVATION_ENDED) and reason tell it apart.
        return events_pb2.ReservationCancelled(
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            screening_id=event.screening_id,
            movie_id=event.screening.movie_id,
            movie_title=event.screening.movie_title,
            start_time=timestamp(event.screening.starts_at),
            seats=_labels(event.seats),
            amount=money_proto(event.amount),
            payment_id=event.payment_id or "",
            reason=event.reason,
            cancelled_by=actor_message(event.cancelled_by),
        )
    if isinstance(event, ReservationFailed):
        return events_pb2.ReservationFailed(
            reservation_id=event.reservation_id,
            customer_id=event.customer_id,
            customer_email=event.customer_email,
            screening_id=event.screening_id,
            seats=_labels(event.seats),
            reason=event.reason,
            failed_by=actor_message(event.failed_by),
        )
    raise TypeError(f"not a booking event: {event!r}")


class PgOutbox:
    """Outbox port on the unit of work's connection (call inside its transaction)."""

    def __init__(self, conn: asyncpg.Connection, versions: VersionSource, source: str = SOURCE) -> None:
        self._conn = conn
        self._versions = versions
        self._source = source
        self._added: dict[str, int] = {}  # events added per reservation in this unit of work

    def envelope(self, event: DomainEvent) -> EventEnvelope:
        reservation_id = event.reservation_id
        # Every transition bumps the version by one and raises one event, and the unit of work
        # adds its events in the order they were raised: the n-th is loaded version + n.
        count = self._added.get(reservation_id, 0) + 1
        self._added[reservation_id] = count
        return kit_envelope.wrap(
            event_message(event),
            source=self._source,
            subject=reservation_id,
            aggregate_id=reservation_id,
            aggregate_version=self._versions.loaded_version(reservation_id) + count,
            time=event.occurred_at,
        )

    async def add(self, event: DomainEvent) -> None:
        await kit_outbox.add(self._conn, self.envelope(event))
