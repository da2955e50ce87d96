"""Builders shared by the movie integration tests: requests, review events, reading streams."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from nats.js.client import JetStreamContext

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import movie_pb2 as pb
from cinema.movie.v1 import movie_pb2_grpc
from cinema.review.v1 import events_pb2 as review_events
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.grpc_errors import find_detail

T = TypeVar("T")
Metadata = tuple[tuple[str, str]]
PRICE = Money(minor_units=1200, currency_code="EUR")
# A day far enough ahead that every test has the halls to itself, on whole hours.
BASE = (datetime.now(UTC) + timedelta(days=30)).replace(minute=0, second=0, microsecond=0)


def stamp(when: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(when)
    return result


def new_hall() -> str:
    return f"Hall {uuid.uuid4().hex[:8]}"


async def create_movie(
    stub: movie_pb2_grpc.MovieServiceAsyncStub,
    manager: Metadata,
    *,
    title: str = "Metropolis",
    minutes: int = 120,
    genres: Sequence[str] = ("drama",),
) -> pb.Movie:
    response = await stub.CreateMovie(
        pb.CreateMovieRequest(movie=pb.Movie(title=title, duration_minutes=minutes, genres=list(genres))),
        metadata=manager,
    )
    return response.movie


def screening_request(
    movie_id: str, hall: str, start: datetime, *, rows: int = 8, currency: str = "EUR"
) -> pb.ScheduleScreeningRequest:
    return pb.ScheduleScreeningRequest(
        movie_id=movie_id,
        screening=pb.Screening(
            hall=hall,
            start_time=stamp(start),
            seat_map=SeatMap(rows=rows, seats_per_row=10, blocked_seats=["A1"] if rows else []),
            price=Money(minor_units=1200, currency_code=currency),
        ),
    )


async def schedule(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, movie_id: str, hall: str, start: datetime
) -> pb.Screening:
    response = await stub.ScheduleScreening(screening_request(movie_id, hall, start), metadata=manager)
    return response.screening


def bad_fields(error: grpc.aio.AioRpcError) -> set[str]:
    bad = find_detail(error, error_details_pb2.BadRequest)
    assert bad is not None, f"no BadRequest detail in {error}"
    return {v.field for v in bad.field_violations}


def review_posted(review_id: str, movie_id: str, rating: int, *, event_id: str | None = None) -> EventEnvelope:
    event = review_events.ReviewPosted(review_id=review_id, movie_id=movie_id, customer_id="c", rating=rating, text="")
    return env.wrap(
        event,
        source="//cinema/review",
        subject=review_id,
        aggregate_id=review_id,
        aggregate_version=1,
        event_id=event_id,
    )


def review_deleted(review_id: str, movie_id: str, rating: int, *, event_id: str | None = None) -> EventEnvelope:
    event = review_events.ReviewDeleted(review_id=review_id, movie_id=movie_id, customer_id="c", rating=rating)
    return env.wrap(
        event,
        source="//cinema/review",
        subject=review_id,
        aggregate_id=review_id,
        aggregate_version=2,
        event_id=event_id,
    )


async def publish_all(js: JetStreamContext, envelopes: Sequence[EventEnvelope]) -> None:
    for envelope in envelopes:
        await jetstream.publish(js, envelope)


async def catalog_events(
    js: JetStreamContext, aggregate_ids: set[str], expected: int, within_s: float = 15.0
) -> list[tuple[EventEnvelope, Message]]:
    """The movie stream's events about `aggregate_ids`, in stream order, read from the start."""
    sub = await js.subscribe("cinema.movie.>", ordered_consumer=True)
    found: list[tuple[EventEnvelope, Message]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    try:
        while len(found) < expected and loop.time() < deadline:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                continue
            try:
                envelope = env.decode(msg.data)
            except env.UndecodableEvent:
                continue
            if envelope.aggregate_id in aggregate_ids:
                found.append((envelope, env.unwrap(envelope)))
        # A little longer: nothing beyond what was expected may arrive (no duplicates).
        with_extra = loop.time() + 0.5
        while loop.time() < with_extra:
            try:
                msg = await sub.next_msg(timeout=0.2)
            except TimeoutError:
                continue
            envelope = env.decode(msg.data)
            if envelope.aggregate_id in aggregate_ids:
                found.append((envelope, env.unwrap(envelope)))
    finally:
        await sub.unsubscribe()
    return found
