"""Ports of the catalog: what its use cases need from the store and the clock.

There is no unit of work spanning documents: the store (MongoDB, or FerretDB, which has no
multi-document transactions) changes one document atomically, so every write port is one
conditional update of one document. `save` methods are compare-and-set on what the caller
read (a movie's version, a screening's revision) and return False when someone else wrote in
between; the aggregate's pending events are written in that same update (the document outbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.movie.domain.movie import Movie
from services.movie.domain.reviews import Outcome
from services.movie.domain.screening import Booking, Screening


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class MovieQuery:
    page_size: int
    genre: str = ""
    only_ids: frozenset[str] | None = None  # e.g. the movies showing on a date
    after: tuple[str, str] | None = None  # (title, id) of the last movie of the previous page


@dataclass(frozen=True)
class ScreeningQuery:
    movie_id: str
    page_size: int
    include_cancelled: bool = False
    after: tuple[datetime, str] | None = None  # (start, id) of the last screening of the previous page


class MovieRepository(Protocol):
    async def get(self, movie_id: str) -> Movie | None:
        """The movie, deleted or not (without its per-review entries)."""
        ...

    async def add(self, movie: Movie) -> bool:
        """Insert with its pending events; False when a movie with this id exists (a retried create)."""
        ...

    async def save(self, movie: Movie, expected_version: int) -> bool:
        """Write the editable fields, state and pending events if the stored version is `expected_version`."""
        ...

    async def list(self, query: MovieQuery) -> Sequence[Movie]:
        """Live movies by title then id, at most `page_size + 1` (to tell whether a next page exists)."""
        ...

    async def record_review_posted(self, movie_id: str, review_id: str, rating: int) -> Outcome | None:
        """Apply a ReviewPosted (see domain.reviews); None when the movie is unknown."""
        ...

    async def record_review_deleted(self, movie_id: str, review_id: str) -> Outcome | None:
        """Apply a ReviewDeleted (see domain.reviews); None when the movie is unknown."""
        ...

    async def deleted_with_screenings_to_cancel(self, limit: int) -> Sequence[str]:
        """Ids of deleted movies whose future screenings may still need cancelling."""
        ...

    async def screenings_cancelled(self, movie_id: str) -> None:
        """The deleted movie's future screenings are all cancelled."""
        ...


class ScreeningRepository(Protocol):
    async def get(self, screening_id: str) -> Screening | None: ...

    async def add(self, screening: Screening) -> bool:
        """Insert (revision 1); False when the id exists (a retried schedule)."""
        ...

    async def save(self, screening: Screening) -> bool:
        """Compare-and-set on `screening.revision`; on success the revision is bumped and the
        pending events are cleared from the object (they are in the document)."""
        ...

    async def list_for_movie(self, query: ScreeningQuery) -> Sequence[Screening]:
        """Visible screenings of a movie by start then id, at most `page_size + 1`."""
        ...

    async def scheduled_after(self, movie_id: str, after: datetime) -> Sequence[Screening]:
        """Scheduled screenings of a movie starting after `after`."""
        ...

    async def movies_showing_between(self, start: datetime, end: datetime) -> frozenset[str]:
        """Ids of the movies with a scheduled screening starting in `[start, end)`."""
        ...

    async def retitle(self, movie_id: str, title: str) -> None:
        """Copy a movie's new title onto its screenings (a display copy, not versioned)."""
        ...


@dataclass(frozen=True)
class HallBookings:
    hall: str
    revision: int  # 0 for a hall never booked
    bookings: Sequence[Booking]


class HallRepository(Protocol):
    async def get(self, hall: str) -> HallBookings: ...

    async def change(self, hall: str, expected_revision: int, add: Booking | None, remove: Sequence[str]) -> bool:
        """Add one booking and remove bookings (by claim id) if the hall is still at `expected_revision`."""
        ...

    async def release(self, hall: str, claim_id: str) -> None:
        """Remove one booking (tidying up: a booking nobody confirms no longer counts anyway)."""
        ...
