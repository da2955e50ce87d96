"""`cinema seed`: the demo catalog of `make up` (cinema_cli.demo_catalog), registered over REST by a
signed-in manager, with a progress callback per step.

The same movies, halls and start times, and the same request ids (uuid5 of the names in the
same namespace): a movie already in the catalog under its title is reused, a screening already
scheduled at the same start is kept, and a retried request returns its first result, so running
it after `make up` (or twice) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from cinema_cli.api import Api
from cinema_cli.demo_catalog import MOVIES, NAMESPACE

SCREENINGS_PER_MOVIE = 2
STEPS = len(MOVIES) * (1 + SCREENINGS_PER_MOVIE)


def request_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class Seeded:
    title: str
    movie_id: str
    screening_id: str
    starts: datetime
    created: bool


def seed_demo_catalog(api: Api, step: Callable[[str], None]) -> list[Seeded]:
    """Register the demo movies and their screenings; `step` is told what each step did."""
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    existing = {m["title"]: m["id"] for m in reversed(api.pages("/v1/movies", "movies"))}
    seeded: list[Seeded] = []
    for hall, (title, minutes, genres, description) in enumerate(MOVIES, start=1):
        if title in existing:
            movie_id = existing[title]
            step(f"{title}: in the catalog")
        else:
            created = api.call(
                "POST",
                "/v1/movies",
                body={"title": title, "durationMinutes": minutes, "genres": genres, "description": description},
                params={"request_id": request_id("movie", title)},
                auth=True,
            )
            movie_id = created["movie"]["id"]
            step(f"{title}: registered")
        scheduled = {
            datetime.fromisoformat(s["startTime"].replace("Z", "+00:00")): s["id"]
            for s in api.pages(f"/v1/movies/{movie_id}/screenings", "screenings")
        }
        for day in range(SCREENINGS_PER_MOVIE):
            starts = datetime.combine(tomorrow + timedelta(days=day), time(17 + hall, 0), tzinfo=UTC)
            if starts in scheduled:
                seeded.append(Seeded(title, movie_id, scheduled[starts], starts, created=False))
                step(f"{title} {starts:%a %H:%M}: already scheduled")
                continue
            screening = api.call(
                "POST",
                f"/v1/movies/{movie_id}/screenings",
                body={
                    "hall": str(hall),
                    "startTime": starts.isoformat().replace("+00:00", "Z"),
                    "seatMap": {"rows": 8, "seatsPerRow": 12},
                    "price": {"minorUnits": "1150", "currencyCode": "EUR"},
                },
                params={"request_id": request_id("screening", title, starts.date().isoformat())},
                auth=True,
            )
            seeded.append(Seeded(title, movie_id, screening["screening"]["id"], starts, created=True))
            step(f"{title} {starts:%a %H:%M}: scheduled")
    return seeded
