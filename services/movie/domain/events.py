"""Domain events of the catalog, raised by the Movie and Screening aggregates.

Each carries the aggregate's id and the version the aggregate reached with it: versions rise by
one per event of one aggregate, and consumers (the reservation replica) order by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.actor import Actor
from services.movie.domain.values import Money, SeatMap


@dataclass(frozen=True)
class CatalogEvent:
    aggregate_id: str
    version: int


@dataclass(frozen=True)
class MovieRegistered(CatalogEvent):
    title: str
    description: str
    genres: tuple[str, ...]
    duration_minutes: int
    poster_url: str


@dataclass(frozen=True)
class MovieUpdated(MovieRegistered):
    changed: tuple[str, ...]  # the field names whose value changed


@dataclass(frozen=True)
class MovieDeleted(CatalogEvent):
    title: str
    deleted_by: Actor  # the manager who deleted it


@dataclass(frozen=True)
class ScreeningScheduled(CatalogEvent):
    movie_id: str
    movie_title: str
    duration_minutes: int
    hall: str
    starts_at: datetime
    seat_map: SeatMap
    price: Money


@dataclass(frozen=True)
class ScreeningRescheduled(CatalogEvent):
    movie_id: str
    movie_title: str
    hall: str
    starts_at: datetime
    previous_hall: str
    previous_starts_at: datetime


@dataclass(frozen=True)
class ScreeningCancelled(CatalogEvent):
    movie_id: str
    movie_title: str
    starts_at: datetime
    reason: str
    cancelled_by: Actor  # a manager, or the system (MOVIE_WITHDRAWN: its movie was deleted)
