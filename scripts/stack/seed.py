"""Demo data for `make up`: a small catalog, registered through the movie service's API by
the demo manager, as a person would. Idempotent: every request carries a request_id derived
from the names (uuid5), so seeding again returns the first results instead of duplicates.
The movie service publishes the catalog events; reservation and the board build from them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import grpc

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc

NAMESPACE = uuid.UUID("8f3b6a52-51d6-4c57-9a43-0b6a1d2c9e11")
MOVIES = (
    ("Arrival", 116, ["sci-fi", "drama"], "A linguist works with the military to talk to alien visitors."),
    ("Paddington 2", 103, ["family", "comedy"], "A bear, a pop-up book and a prison kitchen."),
    ("Parasite", 132, ["thriller", "drama"], "Two families, one house, and a basement nobody mentions."),
)


def _request_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


async def seed_demo_catalog(movie_address: str, manager_token: str) -> list[tuple[str, str, datetime]]:
    """Register the demo movies and their screenings; returns (title, screening id, start)."""
    metadata = (("authorization", f"Bearer {manager_token}"),)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    seeded: list[tuple[str, str, datetime]] = []
    async with grpc.aio.insecure_channel(movie_address) as channel:
        stub = movie_pb2_grpc.MovieServiceStub(channel)
        for hall, (title, minutes, genres, description) in enumerate(MOVIES, start=1):
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
            for day in range(2):
                starts = datetime.combine(tomorrow + timedelta(days=day), time(17 + hall, 0), tzinfo=UTC)
                screening = movie_pb2.Screening(
                    hall=str(hall),
                    seat_map=SeatMap(rows=8, seats_per_row=12),
                    price=Money(minor_units=1150, currency_code="EUR"),
                )
                screening.start_time.FromDatetime(starts)
                scheduled = await stub.ScheduleScreening(
                    movie_pb2.ScheduleScreeningRequest(
                        movie_id=created.movie.id,
                        screening=screening,
                        request_id=_request_id("screening", title, starts.date().isoformat()),
                    ),
                    metadata=metadata,
                    timeout=10,
                )
                seeded.append((title, scheduled.screening.id, starts))
    return seeded
