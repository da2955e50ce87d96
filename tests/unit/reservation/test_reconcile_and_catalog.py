"""The reconciler's paths and the catalog event handlers (order-safe by version)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.reservation.domain.events import ReservationCancelled, ReservationConfirmed, ReservationFailed
from services.reservation.domain.reservation import (
    PAYMENT_NOT_COMPLETED,
    SCREENING_CANCELLED,
    Reservation,
    ReservationState,
)
from services.reservation.domain.screening import Screening, ScreeningStatus
from services.reservation.domain.values import Money, SeatLabel, SeatMap
from services.reservation.entrypoints.reconciler_loop import ReconcilerLoop
from services.reservation.service_layer import catalog
from services.reservation.service_layer.booking import settle
from services.reservation.service_layer.commands import ReconcilePending
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.ports import PaymentResult
from services.reservation.service_layer.reconciler import ReconcileReport, reconcile_pending

from .fakes import FakeBookingStore, FakeClock, FakePaymentGateway
from .helpers import BOB, reserve

WINDOW = ReconcilePending(older_than=timedelta(seconds=10))


async def leave_pending(deps: BookingDependencies, payments: FakePaymentGateway, mode: str, seats: list[str]) -> str:
    payments.mode = mode
    with pytest.raises(Unavailable):
        await reserve(deps, seats, request_id=f"req-{seats[0]}")
    # The process that started the authorization is gone (as after a crash): only the
    # reconciler, or a retry, settles the reservation now.
    await deps.payments_in_progress.close()
    payments.mode = "approve"
    return next(r.id for r in await _pending(deps) if r.request_id == f"req-{seats[0]}")


async def _pending(deps: BookingDependencies) -> list[Reservation]:
    async with deps.uow() as uow:
        return list(await uow.reservations.list_pending_older_than(deps.clock.now() + timedelta(days=1), 100))


# ------------------------------------------------------------------------------- reconciler


async def test_a_lost_approval_is_confirmed_by_the_reconciler(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    reservation_id = await leave_pending(deps, payments, "approve_then_unavailable", ["A1"])
    clock.advance(seconds=11)

    report = await reconcile_pending(WINDOW, deps)

    assert report.confirmed == [reservation_id]
    assert store.reservations[reservation_id].state is ReservationState.CONFIRMED
    assert len(store.events(ReservationConfirmed)) == 1
    assert payments.find_calls == [reservation_id]


async def test_no_payment_yet_waits_out_the_pending_window_then_fails_it_and_frees_the_seats(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    reservation_id = await leave_pending(deps, payments, "unavailable", ["A1"])
    clock.advance(seconds=11)

    report = await reconcile_pending(WINDOW, deps)  # past the first look, inside the pending window

    assert report.awaiting_payment == [reservation_id] and report.failed == []
    assert store.reservations[reservation_id].state is ReservationState.PENDING
    assert store.held("scr-1") == {SeatLabel("A", 1)}  # a slow payment does not cost the seat

    clock.advance(seconds=deps.pending_window_s - 11 + 1)
    report = await reconcile_pending(WINDOW, deps)

    assert report.failed == [reservation_id]
    stored = store.reservations[reservation_id]
    assert (stored.state, stored.failure_reason) == (ReservationState.FAILED, PAYMENT_NOT_COMPLETED)
    assert store.held("scr-1") == set()
    (failed,) = store.events(ReservationFailed)
    assert isinstance(failed, ReservationFailed)
    assert failed.failed_by == Actor.system(PAYMENT_NOT_COMPLETED)  # the system ended it, and says why
    with pytest.raises(FailedPrecondition) as raised:  # a late retry of the request learns what happened
        await reserve(deps, ["A1"], request_id="req-A1")
    assert raised.value.reason == PAYMENT_NOT_COMPLETED


async def test_an_outcome_that_payment_records_late_in_the_window_confirms_it(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    reservation_id = await leave_pending(deps, payments, "unavailable", ["A1"])
    clock.advance(seconds=11)
    assert (await reconcile_pending(WINDOW, deps)).awaiting_payment == [reservation_id]

    payments.payments[reservation_id] = PaymentResult.approved("pay-slow")  # payment finished at last
    clock.advance(seconds=deps.pending_window_s - 12)
    report = await reconcile_pending(WINDOW, deps)

    assert report.confirmed == [reservation_id]
    assert store.reservations[reservation_id].state is ReservationState.CONFIRMED
    assert store.held("scr-1") == {SeatLabel("A", 1)}
    # the customer's retry with the same request id gets the eventual result, without a new charge
    calls = len(payments.authorize_calls)
    retried = await reserve(deps, ["A1"], request_id="req-A1")
    assert (retried.id, retried.state) == (reservation_id, ReservationState.CONFIRMED)
    assert len(payments.authorize_calls) == calls


async def test_a_declined_payment_found_later_fails_it(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    reservation_id = await leave_pending(deps, payments, "unavailable", ["A1"])
    payments.payments[reservation_id] = PaymentResult.declined("pay-9", "INSUFFICIENT_FUNDS")
    clock.advance(seconds=11)

    report = await reconcile_pending(WINDOW, deps)

    assert report.failed == [reservation_id]
    assert store.reservations[reservation_id].failure_reason == "INSUFFICIENT_FUNDS"


async def test_while_payment_is_down_everything_waits_for_the_next_round(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    first = await leave_pending(deps, payments, "unavailable", ["A1"])
    await leave_pending(deps, payments, "unavailable", ["A2"])
    clock.advance(seconds=11)
    payments.mode = "unavailable"

    report = await reconcile_pending(WINDOW, deps)

    assert len(report.left_pending) == 2 and first in report.left_pending
    assert len(payments.find_calls) == 1  # stopped asking after the first failure
    assert all(r.state is ReservationState.PENDING for r in store.reservations.values())

    payments.mode = "approve"
    report = await reconcile_pending(WINDOW, deps)
    assert len(report.awaiting_payment) == 2  # payment has no outcome for them (yet)

    clock.advance(seconds=deps.pending_window_s)
    report = await reconcile_pending(WINDOW, deps)
    assert len(report.failed) == 2  # payment never saw them


async def test_young_pending_reservations_are_left_alone(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    await leave_pending(deps, payments, "unavailable", ["A1"])
    clock.advance(seconds=5)
    report = await reconcile_pending(WINDOW, deps)
    assert report.failed == report.confirmed == report.left_pending == []
    assert payments.find_calls == []


async def test_an_idle_reconciler_knows_when_the_next_reservation_can_be_due(
    deps: BookingDependencies, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    # nothing pending: nothing claimed from now on is due before a whole window
    assert (await reconcile_pending(WINDOW, deps)).next_due_in_s == pytest.approx(10.0)
    await leave_pending(deps, payments, "unavailable", ["A1"])
    clock.advance(seconds=4)
    young = await reconcile_pending(WINDOW, deps)
    assert young.next_due_in_s == pytest.approx(6.0)  # the claim plus the window
    clock.advance(seconds=7)
    due = await reconcile_pending(WINDOW, deps)
    assert due.awaiting_payment and due.next_due_in_s is None  # something was due: look again soon


def test_the_loop_sleeps_between_the_interval_and_the_window(deps: BookingDependencies) -> None:
    loop = ReconcilerLoop(deps, interval_s=1.0, window_s=10.0)
    assert loop.pause_after(None) == 1.0  # the round failed
    assert loop.pause_after(ReconcileReport(left_pending=["r"])) == 1.0
    assert loop.pause_after(ReconcileReport(next_due_in_s=0.2)) == 1.0
    assert loop.pause_after(ReconcileReport(next_due_in_s=6.0)) == 6.0
    assert loop.pause_after(ReconcileReport(next_due_in_s=60.0)) == 10.0


async def test_the_window_must_outlast_the_payment_deadline(deps: BookingDependencies) -> None:
    with pytest.raises(InvalidArgument):
        await reconcile_pending(ReconcilePending(older_than=timedelta(seconds=0.01)), deps)


async def test_an_approval_after_the_reconciler_gave_up_is_voided(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> None:
    reservation_id = await leave_pending(deps, payments, "unavailable", ["A1"])
    clock.advance(seconds=deps.pending_window_s + 1)
    assert (await reconcile_pending(WINDOW, deps)).failed == [reservation_id]

    settled = await settle(reservation_id, PaymentResult.approved("pay-late"), deps)  # the in-flight answer lands

    assert settled.state is ReservationState.FAILED
    (event,) = store.events(ReservationCancelled)
    assert isinstance(event, ReservationCancelled)
    assert event.refund_only and event.payment_id == "pay-late"


# ------------------------------------------------------------------------------- catalog


def scheduled(version: int, *, hours: int = 3, title: str = "") -> catalog.ScreeningScheduled:
    return catalog.ScreeningScheduled(
        screening_id="scr-2",
        movie_id="mov-1",
        hall="Hall 2",
        starts_at=datetime(2026, 11, 25, 18, 0, tzinfo=UTC) + timedelta(hours=hours),
        seat_map=SeatMap.of(4, 8),
        price=Money(900, "EUR"),
        version=version,
        movie_title=title,
    )


def rescheduled(version: int, hours: int, screening_id: str = "scr-2") -> catalog.ScreeningRescheduled:
    starts_at = datetime(2026, 11, 25, 18, 0, tzinfo=UTC) + timedelta(hours=hours)
    return catalog.ScreeningRescheduled(screening_id, "Hall 3", starts_at, version)


async def test_scheduling_fills_the_replica_and_stale_events_are_ignored(
    deps: BookingDependencies, store: FakeBookingStore
) -> None:
    assert await catalog.on_screening_scheduled(scheduled(1, title="Nosferatu"), deps)
    assert store.screenings["scr-2"].movie_title == "Nosferatu"
    assert await catalog.on_screening_rescheduled(rescheduled(3, hours=5), deps)
    assert not await catalog.on_screening_rescheduled(rescheduled(2, hours=4), deps)  # late, older
    assert not await catalog.on_screening_scheduled(scheduled(1), deps)  # redelivered
    assert not await catalog.on_screening_rescheduled(rescheduled(3, hours=9), deps)  # same version again

    screening = store.screenings["scr-2"]
    assert screening.version == 3
    assert (screening.starts_at.hour, screening.hall) == (23, "Hall 3")  # 18:00 + 5 h
    assert screening.seat_map == SeatMap.of(4, 8) and screening.price == Money(900, "EUR")


async def test_a_reschedule_before_the_schedule_is_redelivered_later(
    deps: BookingDependencies, store: FakeBookingStore
) -> None:
    with pytest.raises(catalog.ScreeningNotYetKnown):
        await catalog.on_screening_rescheduled(rescheduled(2, hours=5), deps)
    await catalog.on_screening_scheduled(scheduled(1), deps)
    assert await catalog.on_screening_rescheduled(rescheduled(2, hours=5), deps)
    assert store.screenings["scr-2"].starts_at.hour == 23


async def test_cancelling_a_screening_cancels_its_active_reservations(
    deps: BookingDependencies, store: FakeBookingStore, payments: FakePaymentGateway
) -> None:
    confirmed = await reserve(deps, ["A1"])
    payments.mode = "unavailable"
    with pytest.raises(Unavailable):
        await reserve(deps, ["A2"], caller=BOB, request_id="bob")

    cancellation = catalog.ScreeningCancelled("scr-1", version=2, reason="projector broke")
    assert await catalog.on_screening_cancelled(cancellation, deps)

    assert store.screenings["scr-1"].status is ScreeningStatus.CANCELLED
    assert all(r.state is ReservationState.CANCELLED for r in store.reservations.values())
    assert store.held("scr-1") == set()
    events = store.events(ReservationCancelled)
    assert len(events) == 2
    assert all(isinstance(e, ReservationCancelled) and e.reason == "projector broke" for e in events)
    assert any(isinstance(e, ReservationCancelled) and e.payment_id == confirmed.payment_id for e in events)

    assert not await catalog.on_screening_cancelled(cancellation, deps)
    assert len(store.events(ReservationCancelled)) == 2
    assert all(r.cancel_reason == "projector broke" for r in store.reservations.values())


async def test_a_cancelled_screening_stays_cancelled(deps: BookingDependencies, store: FakeBookingStore) -> None:
    await catalog.on_screening_scheduled(scheduled(1), deps)
    await catalog.on_screening_cancelled(catalog.ScreeningCancelled("scr-2", version=2), deps)
    assert await catalog.on_screening_rescheduled(rescheduled(3, hours=6), deps)
    assert store.screenings["scr-2"].status is ScreeningStatus.CANCELLED


async def test_a_cancellation_before_the_schedule_leaves_a_tombstone(
    deps: BookingDependencies, store: FakeBookingStore
) -> None:
    assert await catalog.on_screening_cancelled(catalog.ScreeningCancelled("scr-2", version=2), deps)
    assert not await catalog.on_screening_scheduled(scheduled(1), deps)  # the redelivered older event
    screening = store.screenings["scr-2"]
    assert isinstance(screening, Screening) and screening.is_tombstone


async def test_movie_titles_follow_the_newest_movie_event(deps: BookingDependencies, store: FakeBookingStore) -> None:
    assert await catalog.on_movie_registered(catalog.MovieRegistered("mov-1", "Metropolis", 1), deps)
    await catalog.on_screening_scheduled(scheduled(1, title="stale title from the event"), deps)
    assert store.screenings["scr-2"].movie_title == "Metropolis"  # the replica's own title wins

    assert await catalog.on_movie_updated(catalog.MovieUpdated("mov-1", "Metropolis (restored)", 3), deps)
    assert not await catalog.on_movie_updated(catalog.MovieUpdated("mov-1", "Metropolis (1927)", 2), deps)

    assert store.movies["mov-1"].title == "Metropolis (restored)"
    assert {s.movie_title for s in store.screenings.values()} == {"Metropolis (restored)"}
    assert store.screenings["scr-2"].version == 1  # a rename is not a change of the screening


async def test_a_screening_cancellation_without_a_reason_says_so(
    deps: BookingDependencies, store: FakeBookingStore
) -> None:
    reservation = await reserve(deps, ["A1"])
    await catalog.on_screening_cancelled(catalog.ScreeningCancelled("scr-1", version=2), deps)
    assert store.reservations[reservation.id].cancel_reason == SCREENING_CANCELLED
    assert store.reservations[reservation.id].cancelled_by == Actor.system(SCREENING_CANCELLED)
