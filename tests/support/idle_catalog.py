"""Documents shaped like the movie and review services' (a settled catalog: no pending events),
written straight into their FerretDB databases, for the idle-cost tests: ten times the
benchmark's catalog in seconds, without going through the services.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from services.movie.adapters import mongo as movie_mongo
from services.review.adapters import mongo as review_mongo

Document = Mapping[str, Any]
SCREENINGS_PER_MOVIE = 10
REVIEWS_PER_MOVIE = 5


def movie_documents(
    count: int, screenings_per_movie: int = SCREENINGS_PER_MOVIE
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Documents shaped like the movie service's (no pending events: a settled catalog)."""
    now = datetime.now(UTC)
    movies: list[dict[str, Any]] = []
    screenings: list[dict[str, Any]] = []
    for _ in range(count):
        movie_id = str(uuid.uuid4())
        title = f"Idle {movie_id[:8]}"
        movies.append(
            {
                "_id": movie_id,
                "title": title,
                "description": "A film about waiting. " * 5,
                "genres": ["drama"],
                "duration_minutes": 100,
                "poster_url": "",
                "created_at": now,
                "updated_at": now,
                "version": 1,
                "deleted": False,
                "review_count": 0,
                "rating_sum": 0,
                "reviews": {},
                "pending_events": [],
            }
        )
        for i in range(screenings_per_movie):
            screenings.append(
                {
                    "_id": str(uuid.uuid4()),
                    "movie_id": movie_id,
                    "movie_title": title,
                    "duration_minutes": 100,
                    "hall": f"hall-{i % 8}",
                    "starts_at": now + timedelta(days=1 + i, hours=i % 5),
                    "seat_map": {"rows": 8, "seats_per_row": 12, "blocked": []},
                    "price": {"minor_units": 1200, "currency": "EUR"},
                    "created_at": now,
                    "updated_at": now,
                    "state": "SCHEDULED",
                    "version": 1,
                    "claim_id": "",
                    "pending_claim": None,
                    "cancel_reason": "",
                    "revision": 1,
                    "pending_events": [],
                }
            )
    return movies, screenings


def review_documents(movie_ids: list[str], per_movie: int = REVIEWS_PER_MOVIE) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    reviews: list[dict[str, Any]] = []
    for movie_id in movie_ids:
        for _ in range(per_movie):
            review_id, customer = str(uuid.uuid4()), str(uuid.uuid4())
            reviews.append(
                {
                    "_id": review_id,
                    "review_id": review_id,
                    "movie_id": movie_id,
                    "customer_id": customer,
                    "author_name": "someone",
                    "rating": 4,
                    "text": "Quiet and good. " * 5,
                    "created_at": now,
                    "state": "posted",
                    "author_key": f"{movie_id}/{customer}",
                    "version": 1,
                    "deleted_at": None,
                    "deleted_by": None,
                    "pending_events": [],
                }
            )
    return reviews


async def add_catalog(client: AsyncMongoClient[Document], movies: int) -> None:
    """`movies` movies with their screenings and reviews, into the databases `movie` and `review`."""
    movie_docs, screening_docs = movie_documents(movies)
    await client["movie"][movie_mongo.MOVIES].insert_many(movie_docs)
    await client["movie"][movie_mongo.SCREENINGS].insert_many(screening_docs)
    reviews = review_documents([str(m["_id"]) for m in movie_docs])
    await client["review"][review_mongo.COLLECTION].insert_many(reviews)
