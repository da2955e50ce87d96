"""The booking core as real processes: payment and reservation on real PostgreSQL and NATS.

Each test module gets its own NATS server and fresh databases, so the kills and restarts of
one module never disturb another.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest
from nats.aio.client import Client as NATS

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1.events_pb2 import MovieRegistered, ScreeningScheduled
from cinema.payment.v1 import payment_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.stack.services import Identity, ServiceProcess, payment_process, reservation_process
from scripts.stack.stores import scratch_dir
from services.kit.events import envelope as env
from services.kit.events import jetstream
from tests.support.servers import Server, create_database, start_nats

if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi
    from cinema.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub
    from cinema.reservation.v1.reservation_pb2_grpc import ReservationServiceAsyncStub


@dataclass
class BookingSystem:
    identity: Identity
    nats: Server
    reservation_db: str
    payment_db: str
    payment: ServiceProcess
    reservation: ServiceProcess
    reservation_channel: grpc.aio.Channel
    payment_channel: grpc.aio.Channel

    @property
    def reservations(self) -> ReservationServiceAsyncStub:
        return reservation_pb2_grpc.ReservationServiceStub(self.reservation_channel)

    @property
    def payments(self) -> PaymentServiceAsyncStub:
        return payment_pb2_grpc.PaymentServiceStub(self.payment_channel)

    def manager(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.identity.issuer.metadata(self.identity.issuer.mint("manager-1", roles={"manager"})))

    async def publish_screening(self, rows: int = 5, seats_per_row: int = 10, price_minor: int = 1200) -> str:
        """Publish the catalog events of a new screening (as the movie service will) and wait
        until the reservation service's replica knows it."""
        movie_id, screening_id = str(uuid.uuid4()), str(uuid.uuid4())
        movie = MovieRegistered(movie_id=movie_id, title="Arrival", duration_minutes=116, genres=["sci-fi"])
        screening = ScreeningScheduled(
            screening_id=screening_id,
            movie_id=movie_id,
            movie_title="Arrival",
            duration_minutes=116,
            hall="1",
            seat_map=SeatMap(rows=rows, seats_per_row=seats_per_row),
            price=Money(minor_units=price_minor, currency_code="EUR"),
        )
        screening.start_time.FromDatetime(datetime.now(UTC) + timedelta(days=3))
        nc = NATS()
        await nc.connect(self.nats.url)
        try:
            js = nc.jetstream()
            await jetstream.ensure_streams(js)
            for event, aggregate in ((movie, movie_id), (screening, screening_id)):
                e = env.wrap(
                    event, source="cinema/movie", subject=aggregate, aggregate_id=aggregate, aggregate_version=1
                )
                await jetstream.publish(js, e)
        finally:
            await nc.close()
        request = reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id)
        for _ in range(200):
            try:
                await self.reservations.GetSeatAvailability(
                    request, metadata=self.identity.customer("probe"), timeout=2
                )
                return screening_id
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.05)
        raise AssertionError(f"the reservation service never learned of screening {screening_id}")


@pytest.fixture(scope="module")
def system_nats() -> Iterator[Server]:
    server = start_nats()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
async def booking(postgres_server: Server, system_nats: Server) -> AsyncIterator[BookingSystem]:
    root = scratch_dir("booking")
    identity = Identity(root)
    reservation_db = await create_database(postgres_server, "reservation")
    payment_db = await create_database(postgres_server, "payment")
    payment = payment_process(root, identity, payment_db, system_nats.url)
    payment.start()
    reservation = reservation_process(root, identity, reservation_db, system_nats.url, payment.address)
    reservation.start()
    r_channel = grpc.aio.insecure_channel(reservation.address)
    p_channel = grpc.aio.insecure_channel(payment.address)
    system = BookingSystem(
        identity, system_nats, reservation_db, payment_db, payment, reservation, r_channel, p_channel
    )
    try:
        yield system
    finally:
        await r_channel.close(None)
        await p_channel.close(None)
        reservation.stop()
        payment.stop()
