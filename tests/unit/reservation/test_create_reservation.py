"""create_reservation on fakes: approved, declined, payment unavailable, idempotent replay, races."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.reservation.domain.errors import SeatsTaken
from services.reservation.domain.events import ReservationCancelled, ReservationConfirmed, ReservationFailed
from services.reservation.domain.reservation import INVALID_CARD, LATE_PAYMENT, ReservationState
from services.reservation.domain.values import Money, SeatLabel
from services.reservation.service_layer import booking
from services.reservation.service_layer.commands import CancelReservation
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.ports import PaymentResult

from .fakes import FakeBookingStore, FakeClock, FakePaymentGateway
from .helpers import ALICE, BOB, create_cmd, reserve

A1, A2 = SeatLabel("A", 1), SeatLabel("A", 2)


async def test_approved_payment_confirms_and_writes_the_event(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    reservation = await reserve(deps, ["A2", "A1"])

    assert reservation.state is ReservationState.CONFIRMED
    assert reservation.payment_id == "pay-1"
    assert store.reservations[reservation.id].state is ReservationState.CONFIRMED
    assert store.held("scr-1") == {A1, A2}
    (call,) = payments.authorize_calls
    assert call == (reservation.id, Money(2400, "EUR"), "4242", deps.payment_deadline_s)
    (event,) = store.events()
    assert isinstance(event, ReservationConfirmed)
    assert (event.reservation_id, event.seats, event.payment_id) == (reservation.id, (A1, A2), "pay-1")
    assert (event.screening.movie_title, event.screening.hall) == ("Metropolis", "Hall 1")
    assert event.customer_email == "alice@example.org"
    assert payments.customers == [("alice", "alice@example.org")]


async def test_declined_payment_releases_the_seats_and_says_why(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "decline"
    with pytest.raises(FailedPrecondition) as raised:
        await reserve(deps, ["A1"])

    assert raised.value.reason == "PAYMENT_DECLINED"
    assert raised.value.metadata["decline_reason"] == "insufficient_funds"
    (stored,) = store.reservations.values()
    assert stored.state is ReservationState.FAILED and stored.failure_reason == "insufficient_funds"
    assert store.held("scr-1") == set()
    assert [type(e) for e in store.events()] == [ReservationFailed]


async def test_payment_unavailable_answers_unavailable_and_leaves_it_pending(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "unavailable"
    with pytest.raises(Unavailable) as raised:
        await reserve(deps, ["A1"])

    assert raised.value.retry_after_s == 3.0
    assert raised.value.reason == "PAYMENT_UNAVAILABLE"
    assert len(payments.authorize_calls) == 1  # unreachable: answered at once, not waited out
    (stored,) = store.reservations.values()
    assert stored.state is ReservationState.PENDING  # the reconciler (or a retry) settles it
    assert store.held("scr-1") == {A1}
    assert store.events() == []


async def test_a_hanging_payment_does_not_hang_the_caller(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "hang"  # an adapter that ignores its deadline
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    assert time.monotonic() - started < 1.0  # deadline 0.05 s + grace 0.05 s
    assert next(iter(store.reservations.values())).state is ReservationState.PENDING


async def test_the_callers_own_deadline_bounds_its_wait_not_the_authorization(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.delay_s = 0.04  # inside payment's deadline, but longer than this caller can wait
    started = time.monotonic()
    with pytest.raises(Unavailable):  # 0.23 s minus the 0.2 s answer margin to wait
        await booking.create_reservation(create_cmd(["A1"], time_budget_s=0.23), deps)
    assert time.monotonic() - started < 0.5
    # The caller's deadline bounds its wait, not the authorization: payment's answer still
    # settles the reservation after the caller has gone.
    (pending,) = store.reservations.values()
    for _ in range(100):
        if store.reservations[pending.id].state is ReservationState.CONFIRMED:
            break
        await asyncio.sleep(0.01)
    assert store.reservations[pending.id].state is ReservationState.CONFIRMED
    payments.delay_s = 0.0

    payments.authorize_calls.clear()
    with pytest.raises(Unavailable):  # nothing left to wait with: do not even try
        await booking.create_reservation(create_cmd(["A2"], request_id="req-2", time_budget_s=0.1), deps)
    assert payments.authorize_calls == []


async def test_replaying_a_confirmed_request_returns_it_without_charging_again(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    first = await reserve(deps, ["A1", "A2"])
    again = await reserve(deps, ["A2", "a1"])

    assert again.id == first.id and again.state is ReservationState.CONFIRMED
    assert len(store.reservations) == 1
    assert len(payments.authorize_calls) == 1
    assert len(store.events(ReservationConfirmed)) == 1


async def test_replaying_a_declined_request_gives_the_same_error(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "decline"
    with pytest.raises(FailedPrecondition):
        await reserve(deps, ["A1"])
    payments.mode = "approve"
    with pytest.raises(FailedPrecondition) as raised:
        await reserve(deps, ["A1"])
    assert raised.value.reason == "PAYMENT_DECLINED"
    assert len(payments.authorize_calls) == 1


async def test_replaying_a_pending_request_settles_it_once_payment_is_back(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "approve_then_unavailable"  # approved, but the answer was lost
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    payments.mode = "approve"
    reservation = await reserve(deps, ["A1"])

    assert reservation.state is ReservationState.CONFIRMED
    assert len(store.reservations) == 1
    assert len(payments.payments) == 1  # the second authorize returned the first payment
    assert len(store.events(ReservationConfirmed)) == 1


async def test_replaying_while_payment_is_still_down_answers_unavailable_again(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "unavailable"
    for _ in range(2):
        with pytest.raises(Unavailable):
            await reserve(deps, ["A1"])
    assert len(store.reservations) == 1


async def test_a_request_id_reused_for_other_seats_is_refused(deps: BookingDependencies) -> None:
    await reserve(deps, ["A1"])
    with pytest.raises(FailedPrecondition) as raised:
        await reserve(deps, ["A3"])
    assert raised.value.reason == "REQUEST_ID_REUSED"


async def test_request_ids_are_per_customer(deps: BookingDependencies, store: FakeBookingStore) -> None:
    mine = await reserve(deps, ["A1"], caller=ALICE, request_id="same")
    theirs = await reserve(deps, ["A2"], caller=BOB, request_id="same")
    assert mine.id != theirs.id and len(store.reservations) == 2


async def test_seats_taken_leaves_no_reservation_and_calls_no_payment(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    await reserve(deps, ["A1", "A2"], caller=ALICE)
    with pytest.raises(SeatsTaken) as raised:
        await reserve(deps, ["A2", "A3"], caller=BOB)

    assert raised.value.reason == "SEATS_TAKEN" and raised.value.metadata["seats"] == "A2"
    assert len(store.reservations) == 1
    assert len(payments.authorize_calls) == 1
    assert SeatLabel("A", 3) not in store.held("scr-1")  # the claim of A3 was rolled back


async def test_a_pending_reservation_holds_its_seats(deps: BookingDependencies, payments: FakePaymentGateway) -> None:
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"], caller=ALICE)
    payments.mode = "approve"
    with pytest.raises(SeatsTaken):
        await reserve(deps, ["A1"], caller=BOB)


async def test_two_customers_racing_for_one_seat_one_wins(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.delay_s = 0.01
    results = await asyncio.gather(
        reserve(deps, ["C5", "C6"], caller=ALICE),
        reserve(deps, ["C6", "C7"], caller=BOB),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, SeatsTaken)]
    assert len(winners) == 1 and len(losers) == 1
    assert winners[0].state is ReservationState.CONFIRMED
    assert len(store.reservations) == 1


async def test_the_same_request_sent_twice_at_once_makes_one_reservation_and_one_charge(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    first, second = await asyncio.gather(reserve(deps, ["D1"]), reserve(deps, ["D1"]))
    assert first.id == second.id
    assert len(store.reservations) == 1
    assert len(payments.payments) == 1
    assert len(store.events(ReservationConfirmed)) == 1


async def test_validation_errors_reach_the_caller(deps: BookingDependencies, store: FakeBookingStore) -> None:
    with pytest.raises(NotFound):
        await booking.create_reservation(create_cmd(["A1"], screening_id="scr-404"), deps)
    with pytest.raises(InvalidArgument):
        await reserve(deps, ["B5"])  # blocked
    with pytest.raises(InvalidArgument):
        await booking.create_reservation(create_cmd(["A1"], request_id=""), deps)
    assert store.reservations == {}


async def test_an_approval_arriving_after_a_cancellation_is_voided(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    (reservation_id,) = store.reservations
    await booking.cancel_reservation(CancelReservation(ALICE, reservation_id), deps)

    settled = await booking.settle(reservation_id, PaymentResult.approved("pay-late"), deps)

    assert settled.state is ReservationState.CANCELLED
    first, second = store.events(ReservationCancelled)
    assert isinstance(first, ReservationCancelled) and isinstance(second, ReservationCancelled)
    assert (first.payment_id, first.refund_only) == (None, False)
    assert (second.payment_id, second.reason, second.refund_only) == ("pay-late", LATE_PAYMENT, True)
    assert store.held("scr-1") == set()


async def test_a_card_payment_refuses_frees_the_seats_and_names_the_field(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "invalid_card"
    with pytest.raises(InvalidArgument) as raised:
        await reserve(deps, ["A1"])
    assert raised.value.violations[0].field == "card.number"
    (stored,) = store.reservations.values()
    assert stored.state is ReservationState.FAILED and stored.failure_reason == INVALID_CARD
    assert store.held("scr-1") == set()

    payments.mode = "approve"
    with pytest.raises(InvalidArgument):  # the request_id is spent; a new one books
        await reserve(deps, ["A1"])
    assert (await reserve(deps, ["A1"], request_id="req-2")).state is ReservationState.CONFIRMED


def test_the_card_passed_to_payment_never_shows_its_number() -> None:
    cmd = create_cmd(["A1"])
    for text in (repr(cmd), str(cmd), repr(cmd.card), str(cmd.card)):
        assert "4242 4242 4242 4242" not in text and "4242424242424242" not in text
    assert cmd.card.last4 == "4242" and "4242" in repr(cmd.card)


# ------------------------------------------------------------------ a busy payment (issue 14)


async def test_a_slow_payment_is_asked_again_and_the_sale_stands(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.slow_attempts = 2  # two deadlines pass while payment is still working

    reservation = await reserve(deps, ["A1"])

    assert reservation.state is ReservationState.CONFIRMED
    assert len(payments.authorize_calls) == 3
    assert len(payments.payments) == 1  # one payment: the repeats joined it
    assert store.held("scr-1") == {A1}


async def test_a_refusal_before_any_work_is_retried_after_payments_hint(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.refusals = [0.01, 0.01]

    reservation = await reserve(deps, ["A1"])

    assert reservation.state is ReservationState.CONFIRMED
    assert len(payments.authorize_calls) == 3


async def test_a_hint_longer_than_the_callers_time_answers_unavailable_at_once(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.refusals = [60.0]
    started = time.monotonic()

    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])

    assert time.monotonic() - started < deps.payment_wait_s + 1  # did not sleep out the hint
    assert len(payments.authorize_calls) == 1
    assert next(iter(store.reservations.values())).state is ReservationState.PENDING


async def until_state(store: FakeBookingStore, reservation_id: str, state: ReservationState) -> None:
    for _ in range(300):
        if store.reservations[reservation_id].state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"reservation {reservation_id} never became {state}")


async def test_a_payment_slower_than_the_callers_wait_settles_it_after_the_caller_left(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.slow_attempts = 1_000  # slower than the caller's whole wait
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    (pending,) = store.reservations.values()
    assert pending.state is ReservationState.PENDING and store.held("scr-1") == {A1}
    assert len(deps.payments_in_progress) == 1  # the authorization goes on without the caller

    payments.slow_attempts = 0  # payment catches up: no retry, no reconciler needed
    await until_state(store, pending.id, ReservationState.CONFIRMED)

    retried = await reserve(deps, ["A1"])  # the retry with the same request id gets the result
    assert (retried.id, retried.state) == (pending.id, ReservationState.CONFIRMED)
    assert len(payments.payments) == 1
    assert len(store.events(ReservationConfirmed)) == 1


async def test_a_retry_joins_the_authorization_in_progress(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.slow_attempts = 1_000
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    calls = len(payments.authorize_calls)
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])  # the same request again, still unanswered

    assert len(deps.payments_in_progress) == 1
    # One sequence of attempts, not two running side by side: the retry added no calls of its
    # own beyond what the single authorization made meanwhile.
    assert len(payments.authorize_calls) - calls <= deps.payment_wait_s / deps.payment_retry_pause_s


async def until_no_authorization_runs(deps: BookingDependencies) -> None:
    for _ in range(300):
        if len(deps.payments_in_progress) == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background authorization never ended")


# ------------------------------------------------------------ a payment outage (issue 21)


async def test_a_payment_out_of_reach_answers_the_caller_at_once_and_is_asked_until_it_is_back(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    deps = dataclasses.replace(deps, payment_wait_s=5.0)
    payments.mode = "unavailable"
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        await reserve(deps, ["A1"])

    # Unreachable: the caller hears so at once (not after its 5 s wait), with the retry hint.
    assert time.monotonic() - started < 2.5
    assert raised.value.retry_after_s == 3.0 and raised.value.reason == "PAYMENT_UNAVAILABLE"
    (pending,) = store.reservations.values()
    assert pending.state is ReservationState.PENDING and store.held("scr-1") == {A1}
    assert len(deps.payments_in_progress) == 1  # the authorization goes on

    for _ in range(300):  # it keeps asking through the outage
        if len(payments.authorize_calls) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(payments.authorize_calls) >= 3
    payments.mode = "approve"  # payment is back; the customer has walked away
    await until_state(store, pending.id, ReservationState.CONFIRMED)

    assert len(payments.payments) == 1 and len(store.events(ReservationConfirmed)) == 1
    assert len(deps.payments_in_progress) == 0


async def test_a_retry_during_an_outage_joins_it_and_gets_the_reservation_once_payment_is_back(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "unavailable"
    for _ in range(3):
        with pytest.raises(Unavailable):
            await reserve(deps, ["A1"])
        assert len(deps.payments_in_progress) == 1  # the retries joined the one authorization

    # Let the pause between attempts grow to its longest: the retry below cuts it short.
    await asyncio.sleep(booking.MAX_RETRY_PAUSE_S * 1.5)
    payments.mode = "approve"
    started = time.monotonic()
    reservation = await reserve(deps, ["A1"])

    assert reservation.state is ReservationState.CONFIRMED
    assert time.monotonic() - started < deps.payment_wait_s + 0.5  # answered within its wait, not after a pause
    assert len(store.reservations) == 1 and len(payments.payments) == 1
    assert len(store.events(ReservationConfirmed)) == 1


async def test_the_pause_between_attempts_is_capped(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    await asyncio.sleep(booking.MAX_RETRY_PAUSE_S * 2)
    before = len(payments.authorize_calls)
    await asyncio.sleep(booking.MAX_RETRY_PAUSE_S * 3.5)

    # However long the outage, payment is asked again at least every MAX_RETRY_PAUSE_S.
    assert len(payments.authorize_calls) - before >= 2


async def test_an_outage_as_long_as_the_window_allows_does_not_lose_the_sale(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    outage_s = 30.0
    window_s = booking.pending_window_for(
        outage_s,
        payment_deadline_s=deps.payment_deadline_s,
        payment_grace_s=deps.payment_grace_s,
        payment_work_limit_s=deps.payment_work_limit_s,
    )
    deps = dataclasses.replace(deps, pending_window_s=window_s)
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    (pending,) = store.reservations.values()

    clock.advance(seconds=outage_s)  # payment comes back just as the outage window ends
    payments.mode = "approve"
    await until_state(store, pending.id, ReservationState.CONFIRMED)

    assert len(payments.payments) == 1


async def test_past_the_last_moment_to_send_the_authorization_ends_and_leaves_it_to_the_reconciler(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    last_send_s = deps.pending_window_s - deps.payment_work_limit_s - deps.payment_deadline_s - deps.payment_grace_s
    clock.advance(seconds=last_send_s + 0.01)
    await until_no_authorization_runs(deps)
    calls = len(payments.authorize_calls)

    payments.mode = "approve"
    await asyncio.sleep(booking.MAX_RETRY_PAUSE_S * 1.5)

    assert len(payments.authorize_calls) == calls  # nothing is sent that could be approved too late
    assert next(iter(store.reservations.values())).state is ReservationState.PENDING


async def test_late_in_the_pending_window_a_retry_only_asks_for_the_outcome(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A1"])
    (pending,) = store.reservations.values()
    # Past the last moment an authorization may be sent: one sent now could still be approved
    # after the reconciler has failed the reservation at the end of the window.
    clock.advance(seconds=deps.pending_window_s - deps.payment_work_limit_s)
    await until_no_authorization_runs(deps)  # the background authorization gave up by itself
    payments.mode = "approve"
    calls = len(payments.authorize_calls)

    with pytest.raises(Unavailable):  # payment has no outcome: nothing is sent, come back later
        await reserve(deps, ["A1"])
    assert len(payments.authorize_calls) == calls
    assert payments.find_calls == [pending.id]

    payments.payments[pending.id] = PaymentResult.approved("pay-7")  # an earlier attempt did land
    retried = await reserve(deps, ["A1"])
    assert (retried.state, retried.payment_id) == (ReservationState.CONFIRMED, "pay-7")
    assert len(payments.authorize_calls) == calls
