"""Booking domain rules: seats, seat maps, money, the booking policy, reservation transitions."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.kit.actor import Actor, ActorKind
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.reservation.domain.errors import SeatsTaken
from services.reservation.domain.events import ReservationCancelled, ReservationConfirmed, ReservationFailed
from services.reservation.domain.policy import check_reservation_request
from services.reservation.domain.reservation import LATE_PAYMENT, Reservation, ReservationState
from services.reservation.domain.screening import Screening
from services.reservation.domain.values import Money, SeatLabel, SeatMap

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
ALICE = Actor.customer("alice")


def seat(text: str) -> SeatLabel:
    return SeatLabel.parse(text)


# ------------------------------------------------------------------------------ seat labels


@pytest.mark.parametrize(("text", "row", "number"), [("A1", "A", 1), ("z99", "Z", 99), ("M12", "M", 12)])
def test_seat_label_parses_row_letter_and_number(text: str, row: str, number: int) -> None:
    label = SeatLabel.parse(text)
    assert (label.row, label.number) == (row, number)
    assert str(label) == text.upper()


@pytest.mark.parametrize("text", ["", "A", "1", "A0", "A01", "A100", "AA1", "1A", " A1", "A1 ", "Ä1", "A-1", "A\u0661"])
def test_seat_label_rejects_anything_else(text: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        SeatLabel.parse(text, "seats[3]")
    assert raised.value.violations[0].field == "seats[3]"


def test_seat_labels_sort_by_row_then_number() -> None:
    assert sorted([seat("B1"), seat("A10"), seat("A2")]) == [seat("A2"), seat("A10"), seat("B1")]


# ------------------------------------------------------------------------------ seat map


def test_seat_map_bounds_and_blocked_seats() -> None:
    seat_map = SeatMap.of(3, 4, blocked=["B2"])
    assert seat_map.contains(seat("C4"))
    assert not seat_map.contains(seat("D1"))
    assert not seat_map.contains(seat("A5"))
    assert seat_map.contains(seat("B2")) and not seat_map.is_bookable(seat("B2"))
    assert len(list(seat_map.all_seats())) == 12
    assert seat_map.capacity == 11
    assert seat("B2") not in set(seat_map.bookable_seats())


def test_free_count_ignores_blocked_and_off_map_holds() -> None:
    seat_map = SeatMap.of(3, 4, blocked=["B2"])
    assert seat_map.free_count([]) == 11
    assert seat_map.free_count([seat("A1"), seat("A1"), seat("B2"), seat("Z9")]) == 10


@pytest.mark.parametrize(
    ("rows", "per_row", "blocked"), [(27, 10, []), (5, 100, []), (-1, 5, []), (2, 2, ["C1"]), (2, 2, ["A3"])]
)
def test_seat_map_rejects_impossible_halls(rows: int, per_row: int, blocked: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        SeatMap.of(rows, per_row, blocked)


# ------------------------------------------------------------------------------ money


def test_money_is_integral_non_negative_and_in_a_currency() -> None:
    assert Money(1200, "EUR").times(3) == Money(3600, "EUR")
    assert Money(1, "EUR") + Money(2, "EUR") == Money(3, "EUR")
    for amount, currency in [(-1, "EUR"), (5, "eur"), (5, "EURO")]:
        with pytest.raises(InvalidArgument):
            Money(amount, currency)
    with pytest.raises(InvalidArgument):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot add"):
        _ = Money(1, "EUR") + Money(1, "USD")


# ------------------------------------------------------------------------------ screening


def make_screening(*, starts_in: timedelta = timedelta(hours=2), blocked: tuple[str, ...] = ("B5",)) -> Screening:
    return Screening(
        id="scr-1",
        movie_id="mov-1",
        movie_title="Metropolis",
        hall="Hall 1",
        starts_at=NOW + starts_in,
        seat_map=SeatMap.of(5, 10, blocked),
        price=Money(1200, "EUR"),
        version=3,
    )


def test_screening_times_must_be_timezone_aware() -> None:
    with pytest.raises(InvalidArgument):
        Screening("s", "m", "t", "h", datetime(2026, 1, 1), SeatMap(1, 1), Money(1, "EUR"), 1)
    with pytest.raises(InvalidArgument):
        make_screening().has_started(datetime(2026, 1, 1))


def test_screening_versions_order_events() -> None:
    screening = make_screening()
    assert screening.is_superseded_by(4)
    assert not screening.is_superseded_by(3)
    assert not screening.is_superseded_by(2)
    assert screening.cancelled(4).is_cancelled
    tombstone = Screening.tombstone("scr-9", 2)
    assert tombstone.is_cancelled and tombstone.is_tombstone and not make_screening().is_tombstone


# ------------------------------------------------------------------------------ policy


def test_policy_returns_the_seats_sorted() -> None:
    assert check_reservation_request("scr-1", make_screening(), ["c3", "A1"], NOW) == (seat("A1"), seat("C3"))


@pytest.mark.parametrize("count", [0, 11])
def test_policy_wants_one_to_ten_seats(count: int) -> None:
    seats = [f"A{n}" for n in range(1, count + 1)]
    with pytest.raises(InvalidArgument) as raised:
        check_reservation_request("scr-1", make_screening(), seats, NOW)
    assert raised.value.violations[0].field == "seats"


def test_policy_accepts_exactly_ten() -> None:
    assert len(check_reservation_request("scr-1", make_screening(), [f"A{n}" for n in range(1, 11)], NOW)) == 10


def test_policy_rejects_duplicate_seats_whatever_the_case() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_reservation_request("scr-1", make_screening(), ["A1", "a1"], NOW)
    assert [v.field for v in raised.value.violations] == ["seats[1]"]


def test_policy_reports_every_malformed_seat() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_reservation_request("scr-1", make_screening(), ["A1", "??", "A0"], NOW)
    assert [v.field for v in raised.value.violations] == ["seats[1]", "seats[2]"]


def test_policy_needs_a_known_screening() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_reservation_request("", None, ["A1"], NOW)
    assert raised.value.violations[0].field == "screening"
    with pytest.raises(NotFound):
        check_reservation_request("scr-404", None, ["A1"], NOW)


def test_policy_refuses_cancelled_and_started_screenings() -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check_reservation_request("scr-1", make_screening().cancelled(4), ["A1"], NOW)
    assert raised.value.reason == "SCREENING_CANCELLED"
    with pytest.raises(FailedPrecondition) as raised:
        check_reservation_request("scr-1", make_screening(starts_in=timedelta(0)), ["A1"], NOW)
    assert raised.value.reason == "SCREENING_STARTED"
    check_reservation_request("scr-1", make_screening(starts_in=timedelta(seconds=1)), ["A1"], NOW)


def test_policy_refuses_seats_off_the_map_or_blocked() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_reservation_request("scr-1", make_screening(), ["A1", "F1", "A11", "B5"], NOW)
    assert [v.field for v in raised.value.violations] == ["seats[1]", "seats[2]", "seats[3]"]
    assert "blocked" in raised.value.violations[2].description


def test_seats_taken_is_a_failed_precondition_naming_the_seats() -> None:
    error = SeatsTaken("scr-1", [seat("B2"), seat("A1"), seat("A1")])
    assert isinstance(error, FailedPrecondition)
    assert error.reason == "SEATS_TAKEN"
    assert error.metadata == {"screening": "scr-1", "seats": "A1,B2"}


# ------------------------------------------------------------------------------ reservation


def new_reservation(seats: tuple[str, ...] = ("A2", "A1")) -> Reservation:
    return Reservation.open(
        reservation_id="res-1",
        customer_id="alice",
        screening=make_screening(),
        seats=[seat(s) for s in seats],
        request_id="req-1",
        at=NOW,
    )


def test_a_new_reservation_is_pending_and_priced_per_seat() -> None:
    reservation = new_reservation()
    assert reservation.state is ReservationState.PENDING and reservation.is_active
    assert reservation.amount == Money(2400, "EUR")
    assert reservation.seats == (seat("A1"), seat("A2"))
    assert reservation.events == []


def test_confirm_once_records_one_event() -> None:
    reservation = new_reservation()
    reservation.confirm("pay-1", NOW)
    reservation.confirm("pay-1", NOW)  # a repeat of the same confirmation
    assert reservation.state is ReservationState.CONFIRMED and reservation.payment_id == "pay-1"
    assert [type(e) for e in reservation.events] == [ReservationConfirmed]
    with pytest.raises(FailedPrecondition):
        reservation.confirm("pay-2", NOW)
    with pytest.raises(FailedPrecondition) as raised:
        reservation.fail("TOO_LATE", NOW)
    assert raised.value.reason == "RESERVATION_CONFIRMED"


def test_fail_only_from_pending() -> None:
    reservation = new_reservation()
    reservation.fail("INSUFFICIENT_FUNDS", NOW)
    reservation.fail("INSUFFICIENT_FUNDS", NOW)
    assert reservation.state is ReservationState.FAILED and not reservation.is_active
    assert [type(e) for e in reservation.events] == [ReservationFailed]
    assert reservation.events[0].failed_by == Actor.system("INSUFFICIENT_FUNDS")  # type: ignore[union-attr]
    with pytest.raises(FailedPrecondition):
        reservation.confirm("pay-1", NOW)
    with pytest.raises(FailedPrecondition) as raised:
        reservation.cancel(ALICE, "changed my mind", NOW)
    assert raised.value.reason == "RESERVATION_FAILED"


def test_cancel_is_idempotent_and_final() -> None:
    reservation = new_reservation()
    reservation.confirm("pay-1", NOW)
    reservation.events.clear()
    reservation.cancel(ALICE, "changed my mind", NOW + timedelta(minutes=1))
    reservation.cancel(ALICE, "again", NOW + timedelta(minutes=2))
    assert reservation.state is ReservationState.CANCELLED
    (event,) = reservation.events
    assert isinstance(event, ReservationCancelled)
    assert (event.payment_id, event.cancelled_by, event.reason, event.refund_only) == (
        "pay-1",
        ALICE,
        "changed my mind",
        False,
    )
    with pytest.raises(FailedPrecondition):
        reservation.confirm("pay-1", NOW)


def test_a_pending_reservation_can_be_cancelled() -> None:
    reservation = new_reservation()
    reservation.cancel(ALICE, "gave up", NOW)
    assert reservation.state is ReservationState.CANCELLED
    assert reservation.events[0].payment_id is None  # type: ignore[union-attr]


def test_a_late_payment_is_voided_once_with_a_refund_only_event() -> None:
    reservation = new_reservation()
    with pytest.raises(FailedPrecondition):
        reservation.void_late_payment("pay-1", NOW)  # still active: not late
    reservation.cancel(ALICE, "gave up", NOW)
    reservation.events.clear()
    reservation.void_late_payment("pay-1", NOW)
    reservation.void_late_payment("pay-1", NOW)
    (event,) = reservation.events
    assert isinstance(event, ReservationCancelled)
    assert (event.payment_id, event.reason, event.refund_only) == ("pay-1", LATE_PAYMENT, True)
    assert event.cancelled_by == Actor(ActorKind.SYSTEM, "system", LATE_PAYMENT)
    assert reservation.cancelled_by == ALICE  # the cancellation stays the customer's
    assert reservation.state is ReservationState.CANCELLED


def test_every_transition_bumps_the_version() -> None:
    reservation = new_reservation()
    reservation.confirm("pay-1", NOW)
    reservation.cancel(ALICE, "x", NOW)
    reservation.cancel(ALICE, "x", NOW)
    assert reservation.version == 2


# ------------------------------------------------------------------------------ purity


FORBIDDEN_IMPORTS = ("grpc", "google", "asyncpg", "nats", "redis", "pymongo", "httpx", "cinema", "socket", "asyncio")


# Pure modules of the kit every context's domain may use: typed errors and who caused a change.
SHARED_DOMAIN_MODULES = ("services.kit.errors", "services.kit.actor")


def test_the_shared_domain_modules_import_only_the_standard_library() -> None:
    for name in SHARED_DOMAIN_MODULES:
        module = Path(__file__).resolve().parents[3].joinpath(*name.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                assert node.module.split(".")[0] not in (*FORBIDDEN_IMPORTS, "services"), (
                    f"{name} imports {node.module}"
                )
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] not in FORBIDDEN_IMPORTS for alias in node.names)


@pytest.mark.parametrize("context", ["reservation", "payment"])
def test_domain_packages_import_nothing_from_the_outside_world(context: str) -> None:
    domain = Path(__file__).resolve().parents[3] / "services" / context / "domain"
    modules = list(domain.glob("*.py"))
    assert modules
    for module in modules:
        tree = ast.parse(module.read_text(), str(module))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN_IMPORTS, f"{module.name} imports {name}"
                if top == "services":
                    assert name in SHARED_DOMAIN_MODULES or name.startswith(f"services.{context}.domain"), (
                        f"{module.name} imports {name}"
                    )
