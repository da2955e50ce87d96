"""Contract: the catalog events the movie service publishes are what the reservation service's
catalog consumer takes. Both run in-process on their real stores (FerretDB, PostgreSQL) and NATS;
a screening scheduled through MovieService becomes sellable in ReservationService
(GetSeatAvailability knows its seat map and price), a reschedule and a cancellation follow."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from pymongo import AsyncMongoClient

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.stack.process import free_port
from services.kit.events import jetstream
from services.kit.testing_tokens import LocalTokenIssuer
from services.movie.bootstrap import MovieApp
from services.movie.settings import MovieSettings
from services.reservation.bootstrap import ReservationApp
from services.reservation.entrypoints.catalog_consumer import DURABLE as RESERVATION_DURABLE
from services.reservation.settings import ReservationSettings
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def movie_database(mongo_server: Server) -> AsyncIterator[str]:
    name = f"{mongo_server.extra['db_prefix']}contract_movie_{uuid.uuid4().hex[:8]}"
    yield name
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url)
    await client.drop_database(name)
    await client.close()


async def eventually_available(
    stub: reservation_pb2_grpc.ReservationServiceAsyncStub,
    screening_id: str,
    check: Callable[[reservation_pb2.GetSeatAvailabilityResponse], bool],
    within_s: float = 20.0,
) -> reservation_pb2.GetSeatAvailabilityResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    last: Any = None
    while loop.time() < deadline:
        try:
            response: reservation_pb2.GetSeatAvailabilityResponse = await stub.GetSeatAvailability(
                reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id)
            )
            last = response
            if check(response):
                return response
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            last = error.code()
        await asyncio.sleep(0.1)
    raise AssertionError(f"reservation never saw the expected state of {screening_id}: {last}")


async def test_screenings_scheduled_in_the_catalog_are_sellable_in_booking(
    mongo_server: Server, nats_server: Server, postgres_server: Server, movie_database: str, tmp_path: Path
) -> None:
    issuer = LocalTokenIssuer()
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    manager = issuer.metadata(issuer.mint("manager-1", roles={"manager"}))
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    with contextlib.suppress(NotFoundError):  # the replica starts afresh, not where another test's stopped
        await js.delete_consumer("CINEMA_MOVIE", RESERVATION_DURABLE)
    token_file = tmp_path / "payment-token"
    token_file.write_text("unused: this test reserves nothing")

    movie_app = MovieApp(
        MovieSettings(
            mongo_url=mongo_server.url,
            mongo_database=movie_database,
            nats_url=nats_server.url,
            grpc_port=0,
            metrics_enabled=False,
            drain_s=0,
            shutdown_grace_s=0.5,
            relay_poll_s=0.2,
            jwks_source=str(jwks),
            jwt_issuer=issuer.issuer,
            jwt_audience=issuer.audience,
        )
    )
    reservation_app = ReservationApp(
        ReservationSettings(
            database_url=await create_database(postgres_server, "contract_reservation"),
            nats_url=nats_server.url,
            payment_address=f"127.0.0.1:{free_port()}",
            payment_token_file=str(token_file),
            grpc_port=0,
            metrics_enabled=False,
            drain_s=0,
            shutdown_grace_s=0.5,
            jwks_source=str(jwks),
            jwt_issuer=issuer.issuer,
            jwt_audience=issuer.audience,
        )
    )
    try:
        async with (
            movie_app.host() as movie_host,
            reservation_app.host() as reservation_host,
            grpc.aio.insecure_channel(movie_host.address) as movie_channel,
            grpc.aio.insecure_channel(reservation_host.address) as reservation_channel,
        ):
            await movie_app.wait_events_ready()
            await reservation_app.wait_events_ready()
            catalog = movie_pb2_grpc.MovieServiceStub(movie_channel)
            booking = reservation_pb2_grpc.ReservationServiceStub(reservation_channel)

            movie = None
            for _ in range(50):  # the first authenticated call may meet the JWKS still loading
                try:
                    movie = (
                        await catalog.CreateMovie(
                            movie_pb2.CreateMovieRequest(movie=movie_pb2.Movie(title="Contract", duration_minutes=95)),
                            metadata=manager,
                        )
                    ).movie
                    break
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
            assert movie is not None
            start = (datetime.now(UTC) + timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
            request = movie_pb2.ScheduleScreeningRequest(
                movie_id=movie.id,
                screening=movie_pb2.Screening(
                    hall=f"Hall {uuid.uuid4().hex[:6]}",
                    seat_map=SeatMap(rows=5, seats_per_row=8, blocked_seats=["C4"]),
                    price=Money(minor_units=1350, currency_code="EUR"),
                ),
            )
            request.screening.start_time.FromDatetime(start)
            screening = (await catalog.ScheduleScreening(request, metadata=manager)).screening

            seen = await eventually_available(booking, screening.id, lambda r: r.total_seat_count > 0)
            assert (seen.seat_map.rows, seen.seat_map.seats_per_row) == (5, 8)
            assert list(seen.seat_map.blocked_seats) == ["C4"]
            assert (seen.price.minor_units, seen.price.currency_code) == (1350, "EUR")
            assert seen.total_seat_count == 39 and seen.free_seat_count == 39

            moved = movie_pb2.RescheduleScreeningRequest(screening_id=screening.id)
            moved.start_time.FromDatetime(start + timedelta(hours=5))
            await catalog.RescheduleScreening(moved, metadata=manager)
            await catalog.CancelScreening(
                movie_pb2.CancelScreeningRequest(screening_id=screening.id, reason="contract test"), metadata=manager
            )
            cancelled = await eventually_available(booking, screening.id, lambda r: r.free_seat_count == 0)
            assert cancelled.total_seat_count == 39  # still known, no longer sellable
            # The replica took every version in order: scheduled (1), moved (2), cancelled (3).
            row = await reservation_app.pool.fetchrow(
                "SELECT hall, starts_at, status, version, movie_title FROM screenings WHERE id = $1", screening.id
            )
            assert row is not None
            assert (row["status"], row["version"], row["movie_title"]) == ("CANCELLED", 3, "Contract")
            assert (row["hall"], row["starts_at"]) == (screening.hall, start + timedelta(hours=5))
            title = await reservation_app.pool.fetchrow("SELECT title, version FROM movies WHERE id = $1", movie.id)
            assert title is not None and (title["title"], title["version"]) == ("Contract", 1)
    finally:
        await nc.close()
