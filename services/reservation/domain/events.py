"""Domain events the Reservation aggregate raises; the unit of work writes them to the outbox.

Frozen dataclasses of domain types only. Turning them into protobuf messages inside a
CloudEvents envelope (and giving them an event id) is the outbox adapter's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.actor import Actor
from services.reservation.domain.screening import ScreeningDetails
from services.reservation.domain.values import Money, SeatLabel


@dataclass(frozen=True)
class ReservationConfirmed:
    """Payment approved: the seats belong to the customer (notification, viewpage)."""

    reservation_id: str
    customer_id: str
    customer_email: str
    screening_id: str
    screening: ScreeningDetails
    seats: tuple[SeatLabel, ...]
    amount: Money
    payment_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class ReservationCancelled:
    """The reservation no longer stands; payment refunds its payment if there is one.

    `cancelled_by` is the customer (their own reservation), a manager (someone else's), or the
    system with its cause (SCREENING_CANCELLED, or LATE_PAYMENT for a refund only).
    `refund_only` is set when the reservation had already ended (FAILED or CANCELLED) and a
    payment was approved afterwards: the event exists only so that payment refunds it, and
    notification should not tell the customer about a cancellation twice (on the wire, the
    actor's cause and the reason are then LATE_PAYMENT).
    """

    reservation_id: str
    customer_id: str
    customer_email: str
    screening_id: str
    screening: ScreeningDetails
    seats: tuple[SeatLabel, ...]
    amount: Money
    payment_id: str | None
    cancelled_by: Actor
    reason: str
    occurred_at: datetime
    refund_only: bool = False


@dataclass(frozen=True)
class ReservationFailed:
    """Payment declined or never completed: the seats were released (always the system's doing)."""

    reservation_id: str
    customer_id: str
    customer_email: str
    screening_id: str
    seats: tuple[SeatLabel, ...]
    reason: str
    occurred_at: datetime
    failed_by: Actor


DomainEvent = ReservationConfirmed | ReservationCancelled | ReservationFailed
