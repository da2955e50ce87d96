"""Builders shared by the reservation integration tests: catalog events, requests, waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.client import JetStreamContext

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie_events
from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1 import reservation_pb2 as pb
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.payment.domain.processor import CARD_APPROVED
from tests.support.polling import eventually

NEXT_YEAR = datetime.now(UTC).year + 1
PRICE = Money(minor_units=1200, currency_code="EUR")
T = TypeVar("T")


def stamp(when: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(when)
    return result


async def publish(js: JetStreamContext, event: Message, aggregate_id: str, version: int) -> EventEnvelope:
    """Publish a catalog event as the movie service would (envelope subject = aggregate id)."""
    envelope = env.wrap(
        event, source="//cinema/movie", subject=aggregate_id, aggregate_id=aggregate_id, aggregate_version=version
    )
    await jetstream.publish(js, envelope)
    return envelope


async def schedule(
    js: JetStreamContext,
    *,
    screening_id: str | None = None,
    movie_id: str | None = None,
    title: str = "Metropolis",
    starts_in: timedelta = timedelta(days=2),
    rows: int = 13,
    seats_per_row: int = 10,
    blocked: Sequence[str] = ("B5",),
    version: int = 1,
) -> str:
    screening_id = screening_id or str(uuid.uuid4())
    await publish(
        js,
        movie_events.ScreeningScheduled(
            screening_id=screening_id,
            movie_id=movie_id or str(uuid.uuid4()),
            movie_title=title,
            duration_minutes=153,
            hall="Hall 1",
            start_time=stamp(datetime.now(UTC) + starts_in),
            seat_map=SeatMap(rows=rows, seats_per_row=seats_per_row, blocked_seats=list(blocked)),
            price=PRICE,
        ),
        screening_id,
        version,
    )
    return screening_id


def card(number: str = CARD_APPROVED) -> payment_pb2.Card:
    return payment_pb2.Card(number=number, expiry_month=12, expiry_year=NEXT_YEAR, cvc="123")


def create_request(
    screening_id: str, seats: Sequence[str], *, number: str = CARD_APPROVED, request_id: str | None = None
) -> pb.CreateReservationRequest:
    return pb.CreateReservationRequest(
        screening_id=screening_id, seats=list(seats), request_id=request_id or str(uuid.uuid4()), card=card(number)
    )


async def events_of(
    js: JetStreamContext, subject: str, aggregate_id: str, expected: int = 1, within_s: float = 10.0
) -> list[tuple[EventEnvelope, Message]]:
    """The events on `subject` about one aggregate, read with an ephemeral consumer from the start."""
    sub = await js.subscribe(subject, ordered_consumer=True)
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
                continue  # another test's poison message on the shared stream
            if envelope.aggregate_id == aggregate_id:
                found.append((envelope, env.unwrap(envelope)))
    finally:
        await sub.unsubscribe()
    return found


if TYPE_CHECKING:
    from cinema.reservation.v1.reservation_pb2_grpc import ReservationServiceAsyncStub


async def replica_has(
    stub: ReservationServiceAsyncStub, screening_id: str, within_s: float = 10.0
) -> pb.GetSeatAvailabilityResponse:
    """The screening's availability once reservation's replica has it (the consumer is asynchronous)."""

    async def check() -> pb.GetSeatAvailabilityResponse | None:
        try:
            return await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise

    return await eventually(check, within_s=within_s)
