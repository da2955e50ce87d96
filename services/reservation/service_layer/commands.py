"""Commands and queries of the booking use cases: what an entry point (gRPC) hands them.

Plain dataclasses of plain values; the gRPC entry point builds them from the request and the
authenticated caller, and knows nothing else of the use cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from services.kit.actor import Actor
from services.kit.errors import Unauthenticated
from services.reservation.domain.reservation import Reservation
from services.reservation.service_layer.ports import PaymentCard


@dataclass(frozen=True)
class Caller:
    """Who is asking, from the verified token (services.kit.caller.Caller, reduced to what
    booking needs): a customer, or a theater manager."""

    subject: str
    is_manager: bool = False
    email: str = ""  # for notices about the reservation; may be empty

    def __post_init__(self) -> None:
        if not self.subject:
            raise Unauthenticated("no caller identity")

    def may_see(self, reservation: Reservation) -> bool:
        """Customers see only their own reservations; managers see every one."""
        return self.is_manager or reservation.customer_id == self.subject

    def acting_on(self, reservation: Reservation) -> Actor:
        """Who the caller is to this reservation: its customer when it is theirs (a manager's own
        booking included), a manager when it is someone else's."""
        if reservation.customer_id == self.subject or not self.is_manager:
            return Actor.customer(self.subject)
        return Actor.manager(self.subject)


@dataclass(frozen=True)
class CreateReservation:
    caller: Caller
    screening_id: str
    seats: Sequence[str]
    request_id: str  # idempotency key, unique per customer
    card: PaymentCard = field(repr=False)
    # What is left of the incoming call's own deadline, if it has one: the payment call
    # never waits longer than this (minus a margin to answer in time).
    time_budget_s: float | None = None


@dataclass(frozen=True)
class CancelReservation:
    caller: Caller
    reservation_id: str
    reason: str = ""


@dataclass(frozen=True)
class GetReservation:
    caller: Caller
    reservation_id: str


@dataclass(frozen=True)
class ListReservations:
    caller: Caller
    page_size: int = 0  # 0: the default size
    page_token: str = ""


@dataclass(frozen=True)
class GetSeatAvailability:
    screening_id: str


@dataclass(frozen=True)
class ReconcilePending:
    """Settle reservations PENDING for longer than `older_than` (the reconciler's window)."""

    older_than: timedelta
    limit: int = 100
