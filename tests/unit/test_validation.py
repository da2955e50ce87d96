"""The buf.validate rules of the contracts, enforced at run time by services.kit.validation
(the fast path of services.kit.fast_validation, protovalidate where it falls back)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message

from cinema.common.v1 import money_pb2, seat_pb2
from cinema.movie.v1 import movie_pb2
from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1 import reservation_pb2
from cinema.review.v1 import review_pb2
from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.fast_validation import fallback_reason, plan_for
from services.kit.validation import protovalidate_violations_of, validate, violations_of


def _card() -> payment_pb2.Card:
    return payment_pb2.Card(number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123")


def _reservation_request(seats: list[str]) -> reservation_pb2.CreateReservationRequest:
    return reservation_pb2.CreateReservationRequest(
        screening_id=str(uuid.uuid4()), seats=seats, request_id=str(uuid.uuid4()), card=_card()
    )


def _fields(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_valid_create_reservation_request_passes() -> None:
    validate(_reservation_request(["A1", "A2", "J12"]))


def test_ten_seats_pass() -> None:
    validate(_reservation_request([f"B{n}" for n in range(1, 11)]))


@pytest.mark.parametrize("count", [0, 11])
def test_seat_count_outside_one_to_ten_names_seats(count: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate(_reservation_request([f"C{n}" for n in range(1, count + 1)]))
    assert _fields(error) == ["seats"]
    assert "item" in error.value.violations[0].description
    assert error.value.message.startswith("invalid CreateReservationRequest: seats: ")


def test_bad_seat_names_its_index_and_duplicates_name_seats() -> None:
    with pytest.raises(InvalidArgument) as error:
        validate(_reservation_request(["A1", "A1", "a0"]))
    assert sorted(_fields(error)) == ["seats", "seats[2]"]


def test_every_broken_rule_is_reported() -> None:
    request = reservation_pb2.CreateReservationRequest(screening_id="not-a-uuid", seats=["A1"])
    with pytest.raises(InvalidArgument) as error:
        validate(request)
    assert sorted(_fields(error)) == ["card", "request_id", "screening_id"]


def test_rating_six_names_review_rating() -> None:
    request = review_pb2.CreateReviewRequest(movie_id=str(uuid.uuid4()), review=review_pb2.Review(rating=6))
    with pytest.raises(InvalidArgument) as error:
        validate(request)
    assert _fields(error) == ["review.rating"]
    assert "less than or equal to 5" in error.value.violations[0].description


def test_rating_five_with_long_text_names_review_text() -> None:
    request = review_pb2.CreateReviewRequest(
        movie_id=str(uuid.uuid4()), review=review_pb2.Review(rating=5, text="x" * 2001)
    )
    with pytest.raises(InvalidArgument) as error:
        validate(request)
    assert _fields(error) == ["review.text"]


def test_empty_title_names_movie_title() -> None:
    request = movie_pb2.CreateMovieRequest(movie=movie_pb2.Movie(title="", duration_minutes=120))
    with pytest.raises(InvalidArgument) as error:
        validate(request)
    assert _fields(error) == ["movie.title"]


def test_partial_update_passes_and_message_rules_name_their_field() -> None:
    mask = field_mask_pb2.FieldMask(paths=["description"])
    validate(
        movie_pb2.UpdateMovieRequest(
            movie=movie_pb2.Movie(id=str(uuid.uuid4()), description="New synopsis"), update_mask=mask
        )
    )
    with pytest.raises(InvalidArgument) as error:
        validate(movie_pb2.UpdateMovieRequest(movie=movie_pb2.Movie(id="42"), update_mask=mask))
    assert _fields(error) == ["movie.id"]
    with pytest.raises(InvalidArgument) as error:
        validate(movie_pb2.UpdateMovieRequest(update_mask=field_mask_pb2.FieldMask(paths=["review_count"])))
    assert sorted(_fields(error)) == ["movie", "update_mask"]


def _valid_requests() -> dict[str, Message]:
    money = money_pb2.Money(minor_units=1250, currency_code="EUR")
    return {
        "CreateReservationRequest": _reservation_request(["A1", "A2", "J12"]),
        "AuthorizePaymentRequest": payment_pb2.AuthorizePaymentRequest(
            reservation_id=str(uuid.uuid4()),
            customer_id="customer-1",
            customer_email="ada@example.com",
            amount=money,
            card=_card(),
            request_id=str(uuid.uuid4()),
        ),
        "CreateReviewRequest": review_pb2.CreateReviewRequest(
            movie_id=str(uuid.uuid4()), review=review_pb2.Review(rating=4, text="Tense."), request_id=str(uuid.uuid4())
        ),
        "CreateMovieRequest": movie_pb2.CreateMovieRequest(
            movie=movie_pb2.Movie(
                title="Alien",
                description="In space no one can hear you scream.",
                genres=["horror", "sci-fi"],
                duration_minutes=117,
                poster_url="https://example.com/alien.jpg",
            ),
            request_id=str(uuid.uuid4()),
        ),
        "ScheduleScreeningRequest": movie_pb2.ScheduleScreeningRequest(
            movie_id=str(uuid.uuid4()),
            screening=movie_pb2.Screening(
                hall="Hall 1",
                start_time=timestamp_pb2.Timestamp(seconds=1_900_000_000),
                seat_map=seat_pb2.SeatMap(rows=10, seats_per_row=12, blocked_seats=["A1", "A2"]),
                price=money,
            ),
            request_id=str(uuid.uuid4()),
        ),
    }


def test_request_types_of_the_services_take_the_fast_path() -> None:
    for name, request in _valid_requests().items():
        assert plan_for(request.DESCRIPTOR) is not None, (name, fallback_reason(request.DESCRIPTOR))
        assert violations_of(request) == protovalidate_violations_of(request) == ()


def test_update_movie_falls_back_to_protovalidate_for_its_message_rules() -> None:
    descriptor = movie_pb2.UpdateMovieRequest().DESCRIPTOR
    assert plan_for(descriptor) is None
    assert "message-level" in (fallback_reason(descriptor) or "")
    assert plan_for(descriptor) is None  # the verdict is cached, not recomputed


def test_violations_carry_protovalidate_messages() -> None:
    request = reservation_pb2.CreateReservationRequest(
        screening_id="", seats=["A1", "A1", "a0"], request_id="nope", card=payment_pb2.Card(expiry_month=13)
    )
    assert violations_of(request) == (
        FieldViolation("screening_id", "value is empty, which is not a valid UUID"),
        FieldViolation("seats", "repeated value must contain unique items"),
        FieldViolation("seats[2]", "does not match regex pattern `^[A-Z][1-9][0-9]?$`"),
        FieldViolation("request_id", "must be a valid UUID"),
        FieldViolation("card.number", "does not match regex pattern `^[0-9]{12,19}$`"),
        FieldViolation("card.expiry_month", "must be greater than or equal to 1 and less than or equal to 12"),
        FieldViolation("card.expiry_year", "must be greater than or equal to 2000 and less than or equal to 2100"),
        FieldViolation("card.cvc", "does not match regex pattern `^[0-9]{3,4}$`"),
    )


def _microseconds_per_call(check: Callable[[Message], object], message: Message, rounds: int) -> float:
    check(message)  # compile the rules outside the measurement
    started = time.perf_counter()
    for _ in range(rounds):
        check(message)
    return (time.perf_counter() - started) / rounds * 1e6


def test_fast_path_is_at_least_ten_times_faster_than_protovalidate() -> None:
    """A micro-benchmark: printed (pytest -s), asserted only loosely."""
    timings: dict[str, tuple[float, float]] = {}
    for name, request in _valid_requests().items():
        before = _microseconds_per_call(protovalidate_violations_of, request, 20)
        after = _microseconds_per_call(violations_of, request, 500)
        timings[name] = (before, after)
        print(f"{name}: protovalidate {before:,.0f} us, fast path {after:,.1f} us ({before / after:,.0f}x)")
    before, after = timings["CreateReservationRequest"]
    assert after * 10 < before
