"""Demo data for `make up`: a small catalog, published as the movie service will publish it.

Until the movie service exists, the catalog reaches the reservation service only as events;
this publishes `MovieRegistered` and `ScreeningScheduled` for a few demo movies. The ids are
derived from the names (uuid5) and so are the event ids, so seeding again is harmless: the
consumers' inbox and version checks make a repeated event a no-op.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

from nats.aio.client import Client as NATS

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1.events_pb2 import MovieRegistered, ScreeningScheduled
from services.kit.events import envelope as env
from services.kit.events import jetstream

NAMESPACE = uuid.UUID("8f3b6a52-51d6-4c57-9a43-0b6a1d2c9e11")
MOVIES = (
    ("Arrival", 116, ["sci-fi", "drama"]),
    ("Paddington 2", 103, ["family", "comedy"]),
    ("Parasite", 132, ["thriller", "drama"]),
)


def _id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


async def seed_demo_catalog(nats_url: str) -> list[tuple[str, str, datetime]]:
    """Publish the demo catalog; returns (movie title, screening id, start) for printing."""
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    published: list[tuple[str, str, datetime]] = []
    nc = NATS()
    await nc.connect(nats_url, connect_timeout=3)
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        for hall, (title, minutes, genres) in enumerate(MOVIES, start=1):
            movie_id = _id("movie", title)
            movie = MovieRegistered(movie_id=movie_id, title=title, duration_minutes=minutes, genres=genres)
            await jetstream.publish(
                js,
                env.wrap(
                    movie,
                    source="cinema/seed",
                    subject=movie_id,
                    aggregate_id=movie_id,
                    aggregate_version=1,
                    event_id=_id("event", movie_id),
                ),
            )
            for day in range(2):
                starts = datetime.combine(tomorrow + timedelta(days=day), time(18 + hall, 0), tzinfo=UTC)
                screening_id = _id("screening", title, starts.isoformat())
                screening = ScreeningScheduled(
                    screening_id=screening_id,
                    movie_id=movie_id,
                    movie_title=title,
                    duration_minutes=minutes,
                    hall=str(hall),
                    seat_map=SeatMap(rows=8, seats_per_row=12),
                    price=Money(minor_units=1150, currency_code="EUR"),
                )
                screening.start_time.FromDatetime(starts)
                await jetstream.publish(
                    js,
                    env.wrap(
                        screening,
                        source="cinema/seed",
                        subject=screening_id,
                        aggregate_id=screening_id,
                        aggregate_version=1,
                        event_id=_id("event", screening_id),
                    ),
                )
                published.append((title, screening_id, starts))
    finally:
        await nc.close()
    return published
