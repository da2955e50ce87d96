"""The Screening aggregate and the hall rule: no overlap counting runtime plus cleaning gap;
claims that count only while their screening stands behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument
from services.movie.domain.events import ScreeningCancelled, ScreeningRescheduled, ScreeningScheduled
from services.movie.domain.screening import (
    Booking,
    ClaimLost,
    ClaimStatus,
    Screening,
    ScreeningState,
    claim_status,
    occupancy_end,
    overlapping,
)
from services.movie.domain.values import Money, SeatMap

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
MANAGER = Actor.manager("manager-1")
GAP = timedelta(minutes=15)
TIMEOUT = timedelta(seconds=30)
EVENING = datetime(2030, 1, 2, 18, tzinfo=UTC)


def booking(screening_id: str, start: datetime, minutes: int, gap: timedelta = GAP) -> Booking:
    return Booking(f"claim-{screening_id}", screening_id, start, occupancy_end(start, minutes, gap))


def proposed(start: datetime = EVENING, claim: str = "c1", hall: str = "Hall 1") -> Screening:
    return Screening.propose(
        screening_id="s1",
        movie_id="m1",
        movie_title="Metropolis",
        duration_minutes=120,
        hall=hall,
        starts_at=start,
        seat_map=SeatMap(10, 12, ("A1",)),
        price=Money(1200, "EUR"),
        cleaning_gap=GAP,
        claim_id=claim,
        now=NOW,
    )


# --------------------------------------------------------------------------- overlap


def test_the_cleaning_gap_counts() -> None:
    first = booking("a", EVENING, 120)  # 18:00-20:00, hall free at 20:15
    assert first.ends_at == EVENING + timedelta(minutes=135)
    assert overlapping([first], booking("b", EVENING + timedelta(minutes=130), 90))  # during cleaning
    assert not overlapping([first], booking("b", EVENING + timedelta(minutes=135), 90))  # right after it


def test_a_screening_before_must_leave_its_gap_too() -> None:
    later = booking("a", EVENING, 120)
    assert overlapping([later], booking("b", EVENING - timedelta(minutes=100), 90))  # ends 17:50 + 15 > 18:00
    assert not overlapping([later], booking("b", EVENING - timedelta(minutes=105), 90))  # free at 18:00 exactly


def test_overlap_covers_containment_and_same_start() -> None:
    long = booking("a", EVENING, 300)
    assert overlapping([long], booking("b", EVENING + timedelta(hours=1), 30))
    assert overlapping([booking("a", EVENING, 30)], booking("b", EVENING, 30))


def test_a_screening_does_not_collide_with_its_own_bookings() -> None:
    assert not overlapping([booking("a", EVENING, 120)], booking("a", EVENING + timedelta(minutes=30), 120))


def test_no_gap_setting() -> None:
    first = booking("a", EVENING, 120, timedelta(0))
    assert not overlapping([first], booking("b", EVENING + timedelta(minutes=120), 90, timedelta(0)))


# ---------------------------------------------------------------------------- claims


def test_claim_status() -> None:
    s = proposed(claim="c1")
    assert claim_status(None, "c1", NOW, TIMEOUT) is ClaimStatus.DEAD
    assert claim_status(s, "c1", NOW + timedelta(seconds=5), TIMEOUT) is ClaimStatus.LIVE  # pending, fresh
    assert claim_status(s, "c1", NOW + timedelta(seconds=31), TIMEOUT) is ClaimStatus.EXPIRED
    assert claim_status(s, "other", NOW, TIMEOUT) is ClaimStatus.DEAD
    s.confirm("c1", NOW)
    assert claim_status(s, "c1", NOW + timedelta(days=1), TIMEOUT) is ClaimStatus.LIVE  # confirmed: no expiry
    s.cancel("", NOW, MANAGER)
    assert claim_status(s, "c1", NOW, TIMEOUT) is ClaimStatus.DEAD


def test_a_revoked_claim_cannot_be_confirmed() -> None:
    s = proposed(claim="c1")
    assert not s.revoke_expired(NOW + timedelta(seconds=10), TIMEOUT)  # not expired yet
    assert s.revoke_expired(NOW + timedelta(seconds=31), TIMEOUT)
    assert s.state is ScreeningState.ABANDONED
    with pytest.raises(ClaimLost):
        s.confirm("c1", NOW)


# ----------------------------------------------------------------------- life cycle


def test_schedule_reschedule_cancel_versions_and_events() -> None:
    s = proposed()
    assert s.state.value == "PENDING" and not s.is_visible and s.pending == []
    s.confirm("c1", NOW)
    assert s.state is ScreeningState.SCHEDULED and s.version == 1 and s.claim_id == "c1"
    assert isinstance(s.pending[0], ScreeningScheduled) and s.pending[0].version == 1

    later = EVENING + timedelta(hours=3)
    assert s.propose_move(
        hall="Hall 2", starts_at=later, duration_minutes=120, cleaning_gap=GAP, claim_id="c2", now=NOW
    )
    assert s.hall == "Hall 1"  # not moved until the new booking is confirmed
    s.confirm("c2", NOW)
    moved = s.pending[1]
    assert isinstance(moved, ScreeningRescheduled) and moved.version == 2
    assert (moved.hall, moved.starts_at, moved.previous_hall, moved.previous_starts_at) == (
        "Hall 2",
        later,
        "Hall 1",
        EVENING,
    )
    assert s.claim_id == "c2"

    assert s.cancel("projector broke", NOW, MANAGER)
    cancelled = s.pending[2]
    assert (
        isinstance(cancelled, ScreeningCancelled) and cancelled.version == 3 and cancelled.reason == "projector broke"
    )
    assert cancelled.cancelled_by == MANAGER  # who cancelled travels with the event
    assert not s.cancel("again", NOW, MANAGER)  # idempotent
    assert s.version == 3


def test_rescheduling_to_where_it_is_changes_nothing() -> None:
    s = proposed()
    s.confirm("c1", NOW)
    assert not s.propose_move(
        hall="Hall 1", starts_at=EVENING, duration_minutes=120, cleaning_gap=GAP, claim_id="c2", now=NOW
    )


def test_a_refused_move_keeps_the_screening_where_it_was() -> None:
    s = proposed()
    s.confirm("c1", NOW)
    s.propose_move(
        hall="Hall 1",
        starts_at=EVENING + timedelta(hours=1),
        duration_minutes=120,
        cleaning_gap=GAP,
        claim_id="c2",
        now=NOW,
    )
    s.reject("c2")
    assert s.state is ScreeningState.SCHEDULED and s.starts_at == EVENING and s.pending_claim is None


def test_start_must_be_in_the_future_and_hall_named() -> None:
    with pytest.raises(InvalidArgument) as caught:
        proposed(start=NOW - timedelta(minutes=1))
    assert caught.value.violations[0].field == "screening.start_time"
    with pytest.raises(InvalidArgument) as caught:
        proposed(hall="  ")
    assert caught.value.violations[0].field == "screening.hall"


def test_a_started_screening_cannot_be_moved_or_cancelled() -> None:
    s = proposed()
    s.confirm("c1", NOW)
    after_start = EVENING + timedelta(minutes=1)
    with pytest.raises(FailedPrecondition) as caught:
        s.cancel("late", after_start, MANAGER)
    assert caught.value.reason == "SCREENING_STARTED"


def test_times_are_kept_to_the_millisecond() -> None:
    s = proposed(start=EVENING + timedelta(microseconds=123456))
    assert s.starts_at == EVENING + timedelta(microseconds=123000)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: SeatMap(0, 10), "screening.seat_map.rows"),
        (lambda: SeatMap(27, 10), "screening.seat_map.rows"),
        (lambda: SeatMap(5, 0), "screening.seat_map.seats_per_row"),
        (lambda: SeatMap(5, 5, ("F1",)), "screening.seat_map.blocked_seats[0]"),
        (lambda: SeatMap(5, 5, ("A1", "A1")), "screening.seat_map.blocked_seats"),
        (lambda: Money(100, ""), "screening.price.currency_code"),
        (lambda: Money(-1, "EUR"), "screening.price.minor_units"),
    ],
)
def test_seat_map_and_price_rules(build: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build()  # type: ignore[operator]
    assert field in {v.field for v in caught.value.violations}
