"""Catalog domain events as the published contract: cinema.movie.v1 messages in envelopes.

The envelope's subject and aggregate id are the movie's or the screening's id, and its
aggregate_version is the version the aggregate reached with the event (the reservation
replica orders by it).
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.money_pb2 import Money as MoneyProto
from cinema.common.v1.seat_pb2 import SeatMap as SeatMapProto
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as pb
from services.kit.events import envelope as env
from services.kit.events.attribution import actor_message
from services.movie.domain import events as domain
from services.movie.domain.values import Money, SeatMap

SOURCE = "//cinema/movie"


def timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def money_proto(money: Money) -> MoneyProto:
    return MoneyProto(minor_units=money.minor_units, currency_code=money.currency)


def seat_map_proto(seat_map: SeatMap) -> SeatMapProto:
    return SeatMapProto(rows=seat_map.rows, seats_per_row=seat_map.seats_per_row, blocked_seats=list(seat_map.blocked))


def message_of(event: domain.CatalogEvent) -> Message:
    if isinstance(event, domain.MovieUpdated):
        return pb.MovieUpdated(
            movie_id=event.aggregate_id,
            title=event.title,
            description=event.description,
            genres=list(event.genres),
            duration_minutes=event.duration_minutes,
            poster_url=event.poster_url,
            update_mask=FieldMask(paths=list(event.changed)),
        )
    if isinstance(event, domain.MovieRegistered):
        return pb.MovieRegistered(
            movie_id=event.aggregate_id,
            title=event.title,
            description=event.description,
            genres=list(event.genres),
            duration_minutes=event.duration_minutes,
            poster_url=event.poster_url,
        )
    if isinstance(event, domain.MovieDeleted):
        return pb.MovieDeleted(
            movie_id=event.aggregate_id, title=event.title, deleted_by=actor_message(event.deleted_by)
        )
    if isinstance(event, domain.ScreeningScheduled):
        return pb.ScreeningScheduled(
            screening_id=event.aggregate_id,
            movie_id=event.movie_id,
            movie_title=event.movie_title,
            duration_minutes=event.duration_minutes,
            hall=event.hall,
            start_time=timestamp(event.starts_at),
            seat_map=seat_map_proto(event.seat_map),
            price=money_proto(event.price),
        )
    if isinstance(event, domain.ScreeningRescheduled):
        return pb.ScreeningRescheduled(
            screening_id=event.aggregate_id,
            movie_id=event.movie_id,
            movie_title=event.movie_title,
            hall=event.hall,
            start_time=timestamp(event.starts_at),
            previous_hall=event.previous_hall,
            previous_start_time=timestamp(event.previous_starts_at),
        )
    if isinstance(event, domain.ScreeningCancelled):
        return pb.ScreeningCancelled(
            screening_id=event.aggregate_id,
            movie_id=event.movie_id,
            movie_title=event.movie_title,
            start_time=timestamp(event.starts_at),
            reason=event.reason,
            cancelled_by=actor_message(event.cancelled_by),
        )
    raise TypeError(f"no contract for {type(event).__name__}")


def envelope_of(event: domain.CatalogEvent, when: datetime | None = None) -> EventEnvelope:
    return env.wrap(
        message_of(event),
        source=SOURCE,
        subject=event.aggregate_id,
        aggregate_id=event.aggregate_id,
        aggregate_version=event.version,
        time=when,
    )
