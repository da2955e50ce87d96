"""The local replica of the catalog's screenings and movie titles, kept from catalog events.

Booking reads only this replica (never the movie service), so reservations are taken while
the movie service is down. Events can arrive twice or out of order (redelivery), so every
change carries the catalog's version of the aggregate and an older version is ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from services.kit.errors import InvalidArgument
from services.reservation.domain.values import Money, SeatMap


class ScreeningStatus(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"


def require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument.for_field(what, "must be a timezone-aware time")
    return value


@dataclass(frozen=True)
class MovieTitle:
    """What the replica knows of a movie: its title, at the catalog's version of the movie."""

    movie_id: str
    title: str
    version: int


@dataclass(frozen=True)
class ScreeningDetails:
    """What a reservation and its events say about the screening, for display and notices."""

    movie_id: str
    movie_title: str
    hall: str
    starts_at: datetime


@dataclass(frozen=True)
class Screening:
    """A screening as the catalog last described it (immutable: a newer version replaces it)."""

    id: str
    movie_id: str
    movie_title: str
    hall: str
    starts_at: datetime
    seat_map: SeatMap
    price: Money
    version: int
    status: ScreeningStatus = ScreeningStatus.SCHEDULED

    def __post_init__(self) -> None:
        require_aware(self.starts_at, "starts_at")

    @classmethod
    def tombstone(cls, screening_id: str, version: int) -> Screening:
        """A cancelled screening the replica never saw scheduled.

        Kept so that a late, redelivered `ScreeningScheduled` (older version) cannot bring
        the screening back to life.
        """
        return cls(
            id=screening_id,
            movie_id="",
            movie_title="",
            hall="",
            starts_at=datetime.min.replace(tzinfo=UTC),
            seat_map=SeatMap(0, 0),
            price=Money(0, "XXX"),  # ISO 4217 "no currency"
            version=version,
            status=ScreeningStatus.CANCELLED,
        )

    @property
    def is_tombstone(self) -> bool:
        """Only the memory of a cancellation: the replica never saw this screening scheduled."""
        return self.is_cancelled and not self.movie_id

    @property
    def is_cancelled(self) -> bool:
        return self.status is ScreeningStatus.CANCELLED

    def has_started(self, now: datetime) -> bool:
        return require_aware(now, "now") >= self.starts_at

    def is_superseded_by(self, version: int) -> bool:
        """Whether an event at `version` is newer than this replica (else it is stale or a replay)."""
        return version > self.version

    @property
    def details(self) -> ScreeningDetails:
        return ScreeningDetails(self.movie_id, self.movie_title, self.hall, self.starts_at)

    def rescheduled(self, hall: str, starts_at: datetime, version: int) -> Screening:
        return replace(self, hall=hall, starts_at=require_aware(starts_at, "starts_at"), version=version)

    def cancelled(self, version: int) -> Screening:
        return replace(self, status=ScreeningStatus.CANCELLED, version=version)

    def with_movie_title(self, title: str) -> Screening:
        # The title is versioned by the movie (MovieTitle.version), not by the screening,
        # so renaming does not bump the screening's version.
        return replace(self, movie_title=title)
