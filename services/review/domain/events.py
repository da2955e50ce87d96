"""Domain events the Review aggregate raises; the store writes them into the review's document.

Frozen dataclasses of plain values. `version` is the review's version right after the change
that raised the event (posted = 1, deleted = 2): the aggregate version of the envelope, so a
consumer can tell a stale or replayed event of one review from a new one. Turning them into
cinema.review.v1 protobuf messages inside the kit's envelope is the events adapter's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ReviewPosted:
    """A customer posted a review: the movie service counts it (once, keyed by review id)."""

    review_id: str
    movie_id: str
    customer_id: str
    rating: int
    text: str
    version: int
    occurred_at: datetime


@dataclass(frozen=True)
class ReviewDeleted:
    """A review was deleted (by its author or a manager). Carries the rating so that the movie
    service can correct its average without asking us."""

    review_id: str
    movie_id: str
    customer_id: str
    rating: int
    deleted_by: str
    version: int
    occurred_at: datetime


DomainEvent = ReviewPosted | ReviewDeleted
