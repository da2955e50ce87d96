"""Demo data for `make up`: a small catalog, registered through the movie service's API by
the demo manager, as a person would. Idempotent: a movie already in the catalog under its title
is reused, a screening already scheduled at the same start is kept, and every request carries a
request_id derived from the names (uuid5), so a retried request returns its first result.
The movie service publishes the catalog events; reservation and the board build from them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

import grpc

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema_cli.demo_catalog import MOVIES, NAMESPACE

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    from cinema.movie.v1.movie_pb2_grpc import MovieServiceAsyncStub


def _request_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


async def seed_demo_catalog(movie_address: str, manager_token: str) -> list[tuple[str, str, datetime]]:
    """Register the demo movies and their screenings; returns (title, screening id, start)."""
    metadata = (("authorization", f"Bearer {manager_token}"),)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    seeded: list[tuple[str, str, datetime]] = []
    async with grpc.aio.insecure_channel(movie_address) as channel:
        stub: MovieServiceAsyncStub = movie_pb2_grpc.MovieServiceStub(channel)
        existing = await _movies_by_title(stub)
        for hall, (title, minutes, genres, description) in enumerate(MOVIES, start=1):
            if title in existing:
                movie_id = existing[title]
            else:
                created = await stub.CreateMovie(
                    movie_pb2.CreateMovieRequest(
                        movie=movie_pb2.Movie(
                            title=title, duration_minutes=minutes, genres=genres, description=description
                        ),
                        request_id=_request_id("movie", title),
                    ),
                    metadata=metadata,
                    timeout=10,
                )
                movie_id = created.movie.id
            scheduled_at = await _screenings_by_start(stub, movie_id)
            for day in range(2):
                starts = datetime.combine(tomorrow + timedelta(days=day), time(17 + hall, 0), tzinfo=UTC)
                if starts in scheduled_at:
                    seeded.append((title, scheduled_at[starts], starts))
                    continue
                screening = movie_pb2.Screening(
                    hall=str(hall),
                    seat_map=SeatMap(rows=8, seats_per_row=12),
                    price=Money(minor_units=1150, currency_code="EUR"),
                )
                screening.start_time.FromDatetime(starts)
                scheduled = await stub.ScheduleScreening(
                    movie_pb2.ScheduleScreeningRequest(
                        movie_id=movie_id,
                        screening=screening,
                        request_id=_request_id("screening", title, starts.date().isoformat()),
                    ),
                    metadata=metadata,
                    timeout=10,
                )
                seeded.append((title, scheduled.screening.id, starts))
    return seeded


async def _movies_by_title(stub: MovieServiceAsyncStub) -> dict[str, str]:
    found: dict[str, str] = {}
    token = ""
    while True:
        page = await stub.ListMovies(movie_pb2.ListMoviesRequest(page_size=100, page_token=token), timeout=10)
        for movie in page.movies:
            found.setdefault(movie.title, movie.id)
        token = page.next_page_token
        if not token:
            return found


async def _screenings_by_start(stub: MovieServiceAsyncStub, movie_id: str) -> dict[datetime, str]:
    found: dict[datetime, str] = {}
    token = ""
    while True:
        page = await stub.ListScreenings(
            movie_pb2.ListScreeningsRequest(movie_id=movie_id, page_size=100, page_token=token), timeout=10
        )
        for screening in page.screenings:
            found[screening.start_time.ToDatetime(tzinfo=UTC)] = screening.id
        token = page.next_page_token
        if not token:
            return found
