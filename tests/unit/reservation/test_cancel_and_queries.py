"""cancel_reservation, get_reservation, list_reservations and get_seat_availability on fakes."""

from __future__ import annotations

import pytest

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.reservation.domain.events import ReservationCancelled
from services.reservation.domain.reservation import ReservationState
from services.reservation.domain.screening import ScreeningStatus
from services.reservation.domain.values import SeatLabel
from services.reservation.service_layer import booking
from services.reservation.service_layer.commands import (
    CancelReservation,
    GetReservation,
    GetSeatAvailability,
    ListReservations,
)
from services.reservation.service_layer.dependencies import BookingDependencies

from .fakes import FakeBookingStore, FakeClock, FakePaymentGateway
from .helpers import ALICE, BOB, MANAGER, reserve


async def test_the_owner_cancels_and_the_seats_are_free_at_once(
    deps: BookingDependencies, store: FakeBookingStore
) -> None:
    reservation = await reserve(deps, ["A1", "A2"])
    cancelled = await booking.cancel_reservation(CancelReservation(ALICE, reservation.id), deps)

    assert cancelled.state is ReservationState.CANCELLED
    assert store.reservations[reservation.id].state is ReservationState.CANCELLED
    assert store.held("scr-1") == set()
    (event,) = store.events(ReservationCancelled)
    assert isinstance(event, ReservationCancelled)
    assert (event.payment_id, event.cancelled_by, event.reason) == (
        "pay-1",
        Actor.customer("alice"),
        "CANCELLED_BY_CUSTOMER",
    )
    again = await reserve(deps, ["A1"], caller=BOB, request_id="bob-1")
    assert again.state is ReservationState.CONFIRMED


async def test_another_customer_cannot_see_or_cancel_it(deps: BookingDependencies, store: FakeBookingStore) -> None:
    reservation = await reserve(deps, ["A1"])
    with pytest.raises(NotFound):
        await booking.cancel_reservation(CancelReservation(BOB, reservation.id), deps)
    with pytest.raises(NotFound):
        await booking.get_reservation(GetReservation(BOB, reservation.id), deps)
    assert store.reservations[reservation.id].state is ReservationState.CONFIRMED
    assert store.events(ReservationCancelled) == []


async def test_unknown_and_foreign_reservations_look_the_same(deps: BookingDependencies) -> None:
    reservation = await reserve(deps, ["A1"])
    with pytest.raises(NotFound) as foreign:
        await booking.cancel_reservation(CancelReservation(BOB, reservation.id), deps)
    with pytest.raises(NotFound) as unknown:
        await booking.cancel_reservation(CancelReservation(BOB, "res-404"), deps)
    assert foreign.value.resource_type == unknown.value.resource_type == "reservation"


async def test_a_manager_may_cancel_any_reservation(deps: BookingDependencies, store: FakeBookingStore) -> None:
    reservation = await reserve(deps, ["A1"])
    await booking.cancel_reservation(CancelReservation(MANAGER, reservation.id, reason="hall flooded"), deps)
    (event,) = store.events(ReservationCancelled)
    assert isinstance(event, ReservationCancelled)
    assert (event.cancelled_by, event.reason) == (Actor.manager("manager-1"), "hall flooded")
    seen = await booking.get_reservation(GetReservation(MANAGER, reservation.id), deps)
    assert seen.state is ReservationState.CANCELLED


async def test_a_manager_cancelling_their_own_reservation_acts_as_its_customer(
    deps: BookingDependencies, store: FakeBookingStore
) -> None:
    reservation = await reserve(deps, ["A1"], caller=MANAGER, request_id="mgr-1")
    await booking.cancel_reservation(CancelReservation(MANAGER, reservation.id, reason="plans changed"), deps)
    (event,) = store.events(ReservationCancelled)
    assert isinstance(event, ReservationCancelled)
    assert (event.cancelled_by, event.reason) == (Actor.customer("manager-1"), "plans changed")
    assert store.reservations[reservation.id].cancelled_by == Actor.customer("manager-1")


async def test_cancelling_twice_is_a_no_op(deps: BookingDependencies, store: FakeBookingStore) -> None:
    reservation = await reserve(deps, ["A1"])
    await booking.cancel_reservation(CancelReservation(ALICE, reservation.id), deps)
    again = await booking.cancel_reservation(CancelReservation(ALICE, reservation.id), deps)
    assert again.state is ReservationState.CANCELLED
    assert len(store.events(ReservationCancelled)) == 1


async def test_cancel_works_while_payment_is_down(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    confirmed = await reserve(deps, ["A1"])
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A2"], request_id="req-2")
    pending = next(r for r in store.reservations.values() if r.state is ReservationState.PENDING)
    calls = len(payments.authorize_calls) + len(payments.find_calls)

    for reservation_id in (confirmed.id, pending.id):
        cancelled = await booking.cancel_reservation(CancelReservation(ALICE, reservation_id), deps)
        assert cancelled.state is ReservationState.CANCELLED

    assert store.held("scr-1") == set()
    assert len(store.events(ReservationCancelled)) == 2
    assert len(payments.authorize_calls) + len(payments.find_calls) == calls  # payment not involved


async def test_a_failed_reservation_cannot_be_cancelled(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "decline"
    with pytest.raises(FailedPrecondition):
        await reserve(deps, ["A1"])
    (reservation_id,) = store.reservations
    with pytest.raises(FailedPrecondition) as raised:
        await booking.cancel_reservation(CancelReservation(ALICE, reservation_id), deps)
    assert raised.value.reason == "RESERVATION_FAILED"


async def test_get_returns_the_owners_reservation(deps: BookingDependencies) -> None:
    reservation = await reserve(deps, ["A1"])
    seen = await booking.get_reservation(GetReservation(ALICE, reservation.id), deps)
    assert (seen.id, seen.state) == (reservation.id, ReservationState.CONFIRMED)
    with pytest.raises(NotFound):
        await booking.get_reservation(GetReservation(ALICE, "res-404"), deps)


async def test_list_pages_through_the_callers_own_reservations(deps: BookingDependencies, clock: FakeClock) -> None:
    mine = []
    for n in range(5):
        mine.append(await reserve(deps, [f"C{n + 1}"], request_id=f"req-{n}"))
        clock.advance(seconds=1)
    await reserve(deps, ["E1"], caller=BOB, request_id="bob")

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await booking.list_reservations(ListReservations(ALICE, page_size=2, page_token=token), deps)
        seen += [r.id for r in page.reservations]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [r.id for r in reversed(mine)]  # newest first, Bob's not among them


async def test_list_page_size_defaults_and_limits(deps: BookingDependencies) -> None:
    await reserve(deps, ["A1"])
    page = await booking.list_reservations(ListReservations(ALICE), deps)
    assert len(page.reservations) == 1 and page.next_page_token == ""
    with pytest.raises(InvalidArgument):
        await booking.list_reservations(ListReservations(ALICE, page_size=-1), deps)
    with pytest.raises(InvalidArgument):
        await booking.list_reservations(ListReservations(ALICE, page_token="garbage"), deps)


async def test_availability_combines_the_map_and_live_claims(
    deps: BookingDependencies, payments: FakePaymentGateway
) -> None:
    await reserve(deps, ["A1", "A2"])
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A3"], request_id="req-2")  # pending: still holds A3

    availability = await booking.get_seat_availability(GetSeatAvailability("scr-1"), deps)

    assert availability.bookable and availability.status is ScreeningStatus.SCHEDULED
    assert availability.taken == (SeatLabel("A", 1), SeatLabel("A", 2), SeatLabel("A", 3))
    assert availability.blocked == (SeatLabel("B", 5),)
    assert availability.free_count == 50 - 1 - 3
    assert availability.total_count == 49
    assert SeatLabel("A", 4) in availability.free and SeatLabel("B", 5) not in availability.free


async def test_availability_of_a_started_or_unknown_screening(deps: BookingDependencies, clock: FakeClock) -> None:
    clock.advance(hours=2)
    availability = await booking.get_seat_availability(GetSeatAvailability("scr-1"), deps)
    assert not availability.bookable and availability.free_count == availability.total_count == 49
    with pytest.raises(NotFound):
        await booking.get_seat_availability(GetSeatAvailability("scr-404"), deps)


async def test_a_started_screening_cannot_be_booked(deps: BookingDependencies, clock: FakeClock) -> None:
    clock.advance(hours=2, seconds=-1)
    await reserve(deps, ["A1"])
    clock.advance(seconds=1)
    with pytest.raises(FailedPrecondition) as raised:
        await reserve(deps, ["A2"], request_id="req-2")
    assert raised.value.reason == "SCREENING_STARTED"
