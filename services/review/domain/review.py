"""The Review aggregate: one customer's rating (1..5) and text (up to 2,000 characters) of a movie.

Rules kept here, whatever the entry point:
- a rating is a whole number from 1 to 5; the text is at most 2,000 characters (may be empty);
- a review is deleted by its author or by a manager, once; another customer may not delete it
  (PermissionDenied: reviews are public, so the caller already knows it exists — see
  `delete`); a deleted review is gone for everyone (NotFound);
- every change bumps the version by one and raises one event carrying that version.

One review per customer per movie is a rule about the set of reviews, not about one review: the
store enforces it with a unique key (`author_key`) so that concurrent posts cannot both win.
Whether the movie exists is not checked here or anywhere in this service (see service_layer).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from services.kit.errors import InvalidArgument, NotFound, PermissionDenied
from services.review.domain.events import ReviewDeleted, ReviewPosted

MIN_RATING = 1
MAX_RATING = 5
MAX_TEXT_LENGTH = 2000

# Field paths as callers write them (cinema.review.v1.CreateReviewRequest), so that a rule
# broken here names the same field as the contract's own validation would.
RATING_FIELD = "review.rating"
TEXT_FIELD = "review.text"
MOVIE_FIELD = "movie_id"


class ReviewState(enum.Enum):
    POSTED = "posted"
    # Kept as a tombstone: the document carries the pending ReviewDeleted until it is published,
    # and reads leave it out.
    DELETED = "deleted"


def check_rating(rating: int) -> int:
    if isinstance(rating, bool) or not isinstance(rating, int) or not MIN_RATING <= rating <= MAX_RATING:
        raise InvalidArgument.for_field(RATING_FIELD, f"must be a whole number from {MIN_RATING} to {MAX_RATING}")
    return rating


def check_text(text: str) -> str:
    # Characters (code points), as the contract's max_len counts them, not bytes.
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidArgument.for_field(TEXT_FIELD, f"must be at most {MAX_TEXT_LENGTH} characters")
    return text


def author_key(movie_id: str, customer_id: str) -> str:
    """What is unique among the reviews that stand: one per customer per movie. The movie id is
    a UUID (no `/`), so the key cannot be read two ways."""
    return f"{movie_id}/{customer_id}"


@dataclass
class Review:
    id: str
    movie_id: str
    customer_id: str
    author_name: str
    rating: int
    text: str
    created_at: datetime
    state: ReviewState = ReviewState.POSTED
    version: int = 1
    deleted_at: datetime | None = None
    deleted_by: str | None = None

    @classmethod
    def post(
        cls,
        *,
        review_id: str,
        movie_id: str,
        customer_id: str,
        author_name: str,
        rating: int,
        text: str,
        at: datetime,
    ) -> tuple[Review, ReviewPosted]:
        """A new review and its ReviewPosted (version 1); InvalidArgument naming the bad field."""
        if not movie_id:
            raise InvalidArgument.for_field(MOVIE_FIELD, "the movie to review is required")
        if not customer_id:
            raise ValueError("a review needs its author")  # the caller's subject: never empty here
        review = cls(
            id=review_id,
            movie_id=movie_id,
            customer_id=customer_id,
            author_name=author_name,
            rating=check_rating(rating),
            text=check_text(text),
            created_at=at,
        )
        event = ReviewPosted(
            review_id=review.id,
            movie_id=review.movie_id,
            customer_id=review.customer_id,
            rating=review.rating,
            text=review.text,
            version=review.version,
            occurred_at=at,
        )
        return review, event

    @property
    def is_deleted(self) -> bool:
        return self.state is ReviewState.DELETED

    @property
    def author_key(self) -> str:
        """The unique key of a standing review; a tombstone's is its own id, so that the author
        may review the movie again after deleting their review."""
        if self.is_deleted:
            return f"deleted/{self.id}"
        return author_key(self.movie_id, self.customer_id)

    def may_be_deleted_by(self, subject: str, *, is_manager: bool) -> bool:
        return is_manager or subject == self.customer_id

    def delete(self, *, by: str, is_manager: bool, at: datetime) -> ReviewDeleted:
        """Delete this review as `by` (a manager may delete any review).

        NotFound if it is already deleted. PermissionDenied if `by` is another customer: unlike
        a reservation (private: another customer's is NOT_FOUND, so as not to reveal it exists),
        a review is public — anyone may read it with GetReview — so NOT_FOUND would contradict
        what the same caller can see; the rule in both services is "NOT_FOUND when the caller may
        not see it, PERMISSION_DENIED when they may see it but not change it".
        """
        if self.is_deleted:
            raise NotFound("review", self.id)
        if not self.may_be_deleted_by(by, is_manager=is_manager):
            raise PermissionDenied("only the author of a review or a manager may delete it")
        self.state = ReviewState.DELETED
        self.version += 1
        self.deleted_at = at
        self.deleted_by = by
        return ReviewDeleted(
            review_id=self.id,
            movie_id=self.movie_id,
            customer_id=self.customer_id,
            rating=self.rating,
            deleted_by=by,
            version=self.version,
            occurred_at=at,
        )
