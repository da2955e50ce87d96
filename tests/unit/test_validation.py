"""The buf.validate rules of the contracts, enforced at run time by services.kit.validation."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf import field_mask_pb2

from cinema.movie.v1 import movie_pb2
from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1 import reservation_pb2
from cinema.review.v1 import review_pb2
from services.kit.errors import InvalidArgument
from services.kit.validation import validate


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
