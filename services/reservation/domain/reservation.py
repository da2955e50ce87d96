"""The Reservation aggregate: some seats of one screening for one customer, and its life cycle.

    PENDING --confirm(payment)--> CONFIRMED --cancel--> CANCELLED
       |  \\--cancel-------------------------------------^
       \\--fail(reason)--> FAILED

A reservation is *active* (holds its seats) while PENDING or CONFIRMED. Every transition
records a domain event in `events`; the unit of work moves them to the outbox on commit.
Every ending says who caused it (services.kit.actor.Actor): the customer or a manager who
cancelled, or the system with its cause (screening cancelled, payment never completed or
declined, a late approval voided).
Illegal transitions raise FailedPrecondition; repeating a transition that already happened
the same way is a no-op, because retries and redeliveries repeat them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition
from services.reservation.domain.events import (
    DomainEvent,
    ReservationCancelled,
    ReservationConfirmed,
    ReservationFailed,
)
from services.reservation.domain.screening import Screening, ScreeningDetails, require_aware
from services.reservation.domain.values import Money, SeatLabel


class ReservationState(enum.StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE_STATES = frozenset({ReservationState.PENDING, ReservationState.CONFIRMED})

# Why a reservation failed, besides a processor's decline reason (e.g. INSUFFICIENT_FUNDS).
PAYMENT_NOT_COMPLETED = "PAYMENT_NOT_COMPLETED"  # the reconciler found no payment after its window
INVALID_CARD = "INVALID_CARD"  # payment refused the card as malformed or expired; nothing charged
# Why a reservation was cancelled by the system.
SCREENING_CANCELLED = "SCREENING_CANCELLED"
LATE_PAYMENT = "PAYMENT_APPROVED_AFTER_RESERVATION_ENDED"


@dataclass(eq=False)  # identity, not value: the unit of work tracks aggregates in a set
class Reservation:
    id: str
    customer_id: str
    screening_id: str
    # Movie, hall and start time as the replica describes them; the repository may store a
    # copy or join the replica when it loads the reservation (then they follow reschedules).
    screening: ScreeningDetails
    seats: tuple[SeatLabel, ...]
    amount: Money
    request_id: str
    created_at: datetime
    customer_email: str = ""  # from the caller's token, for notices; may be empty
    state: ReservationState = ReservationState.PENDING
    payment_id: str | None = None
    failure_reason: str | None = None
    cancelled_by: Actor | None = None
    cancel_reason: str | None = None
    updated_at: datetime | None = None
    # Bumped by every transition: the repository writes back what changed, and may use it
    # as an optimistic-concurrency guard (UPDATE ... WHERE version = loaded version).
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list, repr=False)

    @classmethod
    def open(
        cls,
        *,
        reservation_id: str,
        customer_id: str,
        screening: Screening,
        seats: Sequence[SeatLabel],
        request_id: str,
        at: datetime,
        customer_email: str = "",
    ) -> Reservation:
        """A new PENDING reservation priced from the screening (validate with `policy` first)."""
        ordered = tuple(sorted(seats))
        return cls(
            id=reservation_id,
            customer_id=customer_id,
            screening_id=screening.id,
            screening=screening.details,
            seats=ordered,
            amount=screening.price.times(len(ordered)),
            request_id=request_id,
            created_at=require_aware(at, "at"),
            customer_email=customer_email,
        )

    @property
    def is_active(self) -> bool:
        """Whether it holds its seats."""
        return self.state in ACTIVE_STATES

    def confirm(self, payment_id: str, at: datetime) -> None:
        if self.state is ReservationState.CONFIRMED and self.payment_id == payment_id:
            return
        self._require(ReservationState.PENDING, "confirm")
        self.state = ReservationState.CONFIRMED
        self.payment_id = payment_id
        self._touch(at)
        self.events.append(
            ReservationConfirmed(
                reservation_id=self.id,
                customer_id=self.customer_id,
                customer_email=self.customer_email,
                screening_id=self.screening_id,
                screening=self.screening,
                seats=self.seats,
                amount=self.amount,
                payment_id=payment_id,
                occurred_at=at,
            )
        )

    def fail(self, reason: str, at: datetime) -> None:
        if self.state is ReservationState.FAILED:
            return
        self._require(ReservationState.PENDING, "fail")
        self.state = ReservationState.FAILED
        self.failure_reason = reason
        self._touch(at)
        self.events.append(
            ReservationFailed(
                reservation_id=self.id,
                customer_id=self.customer_id,
                customer_email=self.customer_email,
                screening_id=self.screening_id,
                seats=self.seats,
                reason=reason,
                occurred_at=at,
                failed_by=Actor.system(reason),
            )
        )

    def cancel(self, by: Actor, reason: str, at: datetime) -> None:
        """Cancel, freeing the seats; `by` is who did it, `reason` their words (or the cause's)."""
        if self.state is ReservationState.CANCELLED:
            return
        if self.state is ReservationState.FAILED:
            raise FailedPrecondition(
                f"reservation {self.id} failed ({self.failure_reason}); there is nothing to cancel",
                reason="RESERVATION_FAILED",
                metadata={"reservation": self.id, "state": self.state.value},
            )
        self.state = ReservationState.CANCELLED
        self.cancelled_by = by
        self.cancel_reason = reason
        self._touch(at)
        self.events.append(self._cancelled_event(by, reason, at, refund_only=False))

    def void_late_payment(self, payment_id: str, at: datetime) -> None:
        """A payment was approved after this reservation had ended: ask payment to refund it.

        Happens when the reservation was cancelled (or failed by the reconciler) while its
        authorization was still in flight. Without this, an approved payment would be left
        for a reservation that does not stand.
        """
        if self.is_active:
            raise FailedPrecondition(
                f"reservation {self.id} is {self.state.value}; its payment is not late",
                reason="RESERVATION_ACTIVE",
                metadata={"reservation": self.id, "state": self.state.value},
            )
        if self.payment_id == payment_id:
            return  # already voided once
        self.payment_id = payment_id
        self._touch(at)
        self.events.append(self._cancelled_event(Actor.system(LATE_PAYMENT), LATE_PAYMENT, at, refund_only=True))

    def _cancelled_event(self, by: Actor, reason: str, at: datetime, *, refund_only: bool) -> ReservationCancelled:
        return ReservationCancelled(
            reservation_id=self.id,
            customer_id=self.customer_id,
            customer_email=self.customer_email,
            screening_id=self.screening_id,
            screening=self.screening,
            seats=self.seats,
            amount=self.amount,
            payment_id=self.payment_id,
            cancelled_by=by,
            reason=reason,
            occurred_at=at,
            refund_only=refund_only,
        )

    def _require(self, expected: ReservationState, action: str) -> None:
        if self.state is not expected:
            raise FailedPrecondition(
                f"cannot {action} reservation {self.id}: it is {self.state.value}",
                reason=f"RESERVATION_{self.state.value}",
                metadata={"reservation": self.id, "state": self.state.value},
            )

    def _touch(self, at: datetime) -> None:
        self.updated_at = require_aware(at, "at")
        self.version += 1
