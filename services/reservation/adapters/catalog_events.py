"""Catalog events as the booking use cases take them: protobuf (cinema.movie.v1) in, the plain
commands of services.reservation.service_layer.catalog out.

The version of each change is the envelope's `aggregate_version` (of the screening or the
movie), which is what makes the replica order-safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.money_pb2 import Money as MoneyProto
from cinema.common.v1.seat_pb2 import SeatMap as SeatMapProto
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie_events
from services.reservation.domain.values import Money, SeatMap
from services.reservation.service_layer import catalog
from services.reservation.service_layer.dependencies import BookingDependencies

# The subjects the replica follows, on the movie context's stream.
CATALOG_EVENTS: tuple[type[Message], ...] = (
    movie_events.ScreeningScheduled,
    movie_events.ScreeningRescheduled,
    movie_events.ScreeningCancelled,
    movie_events.MovieRegistered,
    movie_events.MovieUpdated,
)


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _money(money: MoneyProto) -> Money:
    return Money(money.minor_units, money.currency_code)


def _seat_map(seat_map: SeatMapProto) -> SeatMap:
    return SeatMap.of(seat_map.rows, seat_map.seats_per_row, blocked=list(seat_map.blocked_seats))


@dataclass(frozen=True)
class CatalogChange:
    """One catalog event, ready to apply: `apply(deps)` returns whether it changed the replica."""

    apply: Callable[[BookingDependencies], Awaitable[bool]]


def translate(envelope: EventEnvelope, event: Message) -> CatalogChange | None:
    """The use case call for a catalog event; None for an event the replica does not follow."""
    version = envelope.aggregate_version
    if isinstance(event, movie_events.ScreeningScheduled):
        scheduled = catalog.ScreeningScheduled(
            screening_id=event.screening_id,
            movie_id=event.movie_id,
            hall=event.hall,
            starts_at=_time(event.start_time),
            seat_map=_seat_map(event.seat_map),
            price=_money(event.price),
            version=version,
            movie_title=event.movie_title,
        )
        return CatalogChange(lambda deps: catalog.on_screening_scheduled(scheduled, deps))
    if isinstance(event, movie_events.ScreeningRescheduled):
        rescheduled = catalog.ScreeningRescheduled(
            screening_id=event.screening_id, hall=event.hall, starts_at=_time(event.start_time), version=version
        )
        return CatalogChange(lambda deps: catalog.on_screening_rescheduled(rescheduled, deps))
    if isinstance(event, movie_events.ScreeningCancelled):
        cancelled = catalog.ScreeningCancelled(screening_id=event.screening_id, version=version, reason=event.reason)
        return CatalogChange(lambda deps: catalog.on_screening_cancelled(cancelled, deps))
    if isinstance(event, movie_events.MovieUpdated):
        updated = catalog.MovieUpdated(movie_id=event.movie_id, title=event.title, version=version)
        return CatalogChange(lambda deps: catalog.on_movie_updated(updated, deps))
    if isinstance(event, movie_events.MovieRegistered):
        registered = catalog.MovieRegistered(movie_id=event.movie_id, title=event.title, version=version)
        return CatalogChange(lambda deps: catalog.on_movie_registered(registered, deps))
    return None
