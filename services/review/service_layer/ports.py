"""Ports of the review service: what its use cases need from the outside world.

The store is a document store without multi-document transactions (MongoDB / FerretDB), so
there is no unit of work spanning documents: every write is ONE atomic write of ONE review
document that carries the review's new state and its pending events together (the document
outbox). A relay publishes those events later; `OutboxSignal.wake()` tells it to look now.
The port asks for no update of a stored review: FerretDB v1 does not isolate concurrent updates
of one document (see services.review.adapters.mongo), so changes are written as new documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.review.domain.events import DomainEvent
from services.review.domain.review import Review


class DuplicateReview(Exception):
    """`ReviewRepository.add` found a unique key taken: the review id (a retried request with the
    same request_id) or the author key (this customer already has a review of this movie)."""


@dataclass(frozen=True)
class ReviewPage:
    """One page of a movie's reviews, newest first; `next_page_token` is "" on the last page."""

    reviews: Sequence[Review]
    next_page_token: str = ""


class ReviewRepository(Protocol):
    async def get(self, review_id: str) -> Review | None:
        """The review with this id, a deleted one (state DELETED) included; None if there is none."""
        ...

    async def find_by_author(self, movie_id: str, customer_id: str) -> Review | None:
        """The standing (not deleted) review of this movie by this customer, if any."""
        ...

    async def add(self, review: Review, events: Sequence[DomainEvent]) -> None:
        """Insert a new review with its pending events, atomically. Raises DuplicateReview."""
        ...

    async def record_deletion(self, review: Review, events: Sequence[DomainEvent]) -> bool:
        """Store the deleted `review` (a tombstone) with its events in one atomic write, once:
        False (nothing written) if the review was deleted already, e.g. by a concurrent delete.
        Events of the review still pending at that moment ride along, ahead of these."""
        ...

    async def list_for_movie(self, movie_id: str, page_size: int, page_token: str) -> ReviewPage:
        """Standing reviews of a movie, newest first (created_at desc, then id desc), keyset
        paginated. `page_token` is "" or a token this method returned for the same movie; any
        other raises InvalidArgument (field `page_token`)."""
        ...


class MovieCatalog(Protocol):
    """Review's replica of the movie catalog (services.review.service_layer.catalog)."""

    async def accepts_reviews(self, movie_id: str) -> bool:
        """True if the movie was registered and not deleted."""
        ...

    async def record_registered(self, movie_id: str) -> None:
        """The movie exists (idempotent)."""
        ...

    async def record_deleted(self, movie_id: str) -> None:
        """The movie was deleted (idempotent, final: a registration seen later does not reopen it)."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class OutboxSignal(Protocol):
    def wake(self) -> None:
        """Pending events were just written: publish soon (the relay polls anyway)."""
        ...
