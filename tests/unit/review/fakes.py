"""In-memory fakes of the review ports, with the store's guarantees: unique review id and
author key, one deletion per review, newest-first keyset pages."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.kit.errors import InvalidArgument
from services.review.domain.events import DomainEvent
from services.review.domain.review import Review, author_key
from services.review.service_layer.ports import DuplicateReview, ReviewPage


@dataclass
class FakeClock:
    at: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        self.at += timedelta(milliseconds=1)  # every call a little later, like time passing
        return self.at


@dataclass
class FakeMovieCatalog:
    """The replica of the catalog: the movies registered and those deleted (deletion is final)."""

    registered: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    async def accepts_reviews(self, movie_id: str) -> bool:
        return movie_id in self.registered and movie_id not in self.deleted

    async def record_registered(self, movie_id: str) -> None:
        self.registered.add(movie_id)

    async def record_deleted(self, movie_id: str) -> None:
        self.deleted.add(movie_id)


@dataclass
class FakeOutbox:
    wakes: int = 0

    def wake(self) -> None:
        self.wakes += 1


class FakeReviewRepository:
    def __init__(self) -> None:
        self.documents: dict[str, Review] = {}
        self.pending: dict[str, list[DomainEvent]] = {}
        # Set by a test: deletions that land between a use case's read and its write.
        self.before_update: list[Review] = []

    def _copy(self, review: Review | None) -> Review | None:
        return copy.deepcopy(review)

    async def get(self, review_id: str) -> Review | None:
        return self._copy(self.documents.get(review_id))

    async def find_by_author(self, movie_id: str, customer_id: str) -> Review | None:
        key = author_key(movie_id, customer_id)
        return self._copy(next((r for r in self.documents.values() if r.author_key == key), None))

    async def add(self, review: Review, events: Sequence[DomainEvent]) -> None:
        if review.id in self.documents or any(r.author_key == review.author_key for r in self.documents.values()):
            raise DuplicateReview(review.id)
        self.documents[review.id] = copy.deepcopy(review)
        self.pending[review.id] = list(events)

    async def record_deletion(self, review: Review, events: Sequence[DomainEvent]) -> bool:
        while self.before_update:  # a concurrent delete lands first
            change = self.before_update.pop()
            self.documents[change.id] = change
        stored = self.documents.get(review.id)
        if stored is None or stored.is_deleted:
            return False
        self.documents[review.id] = copy.deepcopy(review)
        self.pending[review.id] += events
        return True

    async def list_for_movie(self, movie_id: str, page_size: int, page_token: str) -> ReviewPage:
        standing = sorted(
            (r for r in self.documents.values() if r.movie_id == movie_id and not r.is_deleted),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        if page_token:
            if not page_token.startswith(f"{movie_id}|"):
                raise InvalidArgument.for_field("page_token", "not a token this service issued")
            after = page_token.split("|", 1)[1]
            ids = [r.id for r in standing]
            standing = standing[ids.index(after) + 1 :]
        page = [copy.deepcopy(r) for r in standing[:page_size]]
        token = f"{movie_id}|{page[-1].id}" if len(standing) > page_size else ""
        return ReviewPage(reviews=page, next_page_token=token)
