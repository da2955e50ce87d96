"""Small builders shared by the booking tests."""

from __future__ import annotations

from services.reservation.domain.reservation import Reservation
from services.reservation.service_layer import booking
from services.reservation.service_layer.commands import Caller, CreateReservation
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.ports import PaymentCard

ALICE = Caller("alice", email="alice@example.org")
BOB = Caller("bob")
MANAGER = Caller("manager-1", is_manager=True)
CARD = PaymentCard("4242 4242 4242 4242", 12, 2030, "123")


def create_cmd(
    seats: list[str],
    *,
    caller: Caller = ALICE,
    request_id: str = "req-1",
    screening_id: str = "scr-1",
    time_budget_s: float | None = None,
) -> CreateReservation:
    return CreateReservation(caller, screening_id, seats, request_id, CARD, time_budget_s)


async def reserve(
    deps: BookingDependencies, seats: list[str], *, caller: Caller = ALICE, request_id: str = "req-1"
) -> Reservation:
    return await booking.create_reservation(create_cmd(seats, caller=caller, request_id=request_id), deps)
