"""The Review aggregate's rules: rating 1..5, text up to 2,000 characters, deletion by the
author or a manager only and only once, versions and events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.kit.errors import InvalidArgument, NotFound, PermissionDenied
from services.review.domain.events import ReviewDeleted, ReviewPosted
from services.review.domain.review import MAX_TEXT_LENGTH, Review, ReviewState, author_key

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MOVIE = "0b6a1c8e-3f5d-4a47-9f8e-1c2d3e4f5a6b"


def post(rating: int = 4, text: str = "Fine.", customer: str = "alice") -> tuple[Review, ReviewPosted]:
    return Review.post(
        review_id="r1", movie_id=MOVIE, customer_id=customer, author_name="Alice", rating=rating, text=text, at=AT
    )


def test_posting_makes_a_review_at_version_1_and_raises_review_posted() -> None:
    review, event = post(5, "Great")
    assert (review.state, review.version, review.created_at) == (ReviewState.POSTED, 1, AT)
    assert event == ReviewPosted(
        review_id="r1", movie_id=MOVIE, customer_id="alice", rating=5, text="Great", version=1, occurred_at=AT
    )
    assert review.author_key == author_key(MOVIE, "alice") == f"{MOVIE}/alice"


@pytest.mark.parametrize("rating", [1, 2, 3, 4, 5])
def test_ratings_1_to_5_are_accepted(rating: int) -> None:
    assert post(rating)[0].rating == rating


@pytest.mark.parametrize("rating", [0, 6, -1, 100])
def test_ratings_outside_1_to_5_name_the_rating_field(rating: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        post(rating)
    assert [v.field for v in caught.value.violations] == ["review.rating"]


def test_a_boolean_is_not_a_rating() -> None:
    with pytest.raises(InvalidArgument):
        post(True)


def test_text_up_to_2000_characters_counted_as_characters() -> None:
    assert post(text="")[0].text == ""
    assert len(post(text="ü" * MAX_TEXT_LENGTH)[0].text) == 2000  # 4000 bytes in UTF-8: still fine
    with pytest.raises(InvalidArgument) as caught:
        post(text="x" * (MAX_TEXT_LENGTH + 1))
    assert [v.field for v in caught.value.violations] == ["review.text"]


def test_a_movie_is_required() -> None:
    with pytest.raises(InvalidArgument) as caught:
        Review.post(review_id="r1", movie_id="", customer_id="a", author_name="", rating=3, text="", at=AT)
    assert [v.field for v in caught.value.violations] == ["movie_id"]


def test_the_author_deletes_their_review_and_the_event_carries_the_rating() -> None:
    review, _ = post(2)
    later = AT + timedelta(hours=1)
    event = review.delete(by="alice", is_manager=False, at=later)
    assert event == ReviewDeleted(
        review_id="r1", movie_id=MOVIE, customer_id="alice", rating=2, deleted_by="alice", version=2, occurred_at=later
    )
    assert (review.state, review.version, review.deleted_at, review.deleted_by) == (
        ReviewState.DELETED,
        2,
        later,
        "alice",
    )
    # A tombstone frees the author key: the author may review the movie again.
    assert review.author_key == "deleted/r1"


def test_a_manager_deletes_any_review() -> None:
    review, _ = post()
    assert review.delete(by="boss", is_manager=True, at=AT).deleted_by == "boss"


def test_another_customer_may_not_delete_a_review() -> None:
    review, _ = post()
    with pytest.raises(PermissionDenied):
        review.delete(by="mallory", is_manager=False, at=AT)
    assert (review.state, review.version) == (ReviewState.POSTED, 1)


def test_a_deleted_review_is_not_found_for_a_second_delete() -> None:
    review, _ = post()
    review.delete(by="alice", is_manager=False, at=AT)
    for by, manager in (("alice", False), ("boss", True), ("mallory", False)):
        with pytest.raises(NotFound):
            review.delete(by=by, is_manager=manager, at=AT)
    assert review.version == 2
