"""Review's replica of the movie catalog on MongoDB / FerretDB: the `movies` collection.

Insert-only, like the reviews (FerretDB v1 does not isolate concurrent updates of one document,
see services.review.adapters.mongo): a movie's registration and its deletion are one document
each, `{_id: "<movie id>:registered"}` and `{_id: "<movie id>:deleted"}`, inserted once (a
repeat hits the unique `_id` and changes nothing), so redelivered or reordered events and two
replicas applying the same event all end in the same state, and a deletion is final. One query
by `_id` answers whether a movie takes reviews.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from services.kit.errors import Unavailable

MOVIES = "movies"
REGISTERED, DELETED = "registered", "deleted"

Document = Mapping[str, Any]


class MongoMovieCatalog:
    def __init__(self, db: AsyncDatabase[Document], retry_after_s: float = 1.0) -> None:
        self._movies: AsyncCollection[Document] = db[MOVIES]
        self._retry_after_s = retry_after_s

    async def accepts_reviews(self, movie_id: str) -> bool:
        try:
            found = {
                doc["_id"]
                async for doc in self._movies.find(
                    {"_id": {"$in": [f"{movie_id}:{REGISTERED}", f"{movie_id}:{DELETED}"]}}, {"_id": 1}
                )
            }
        except ConnectionFailure as exc:
            raise Unavailable("the review store is unavailable", retry_after_s=self._retry_after_s) from exc
        return f"{movie_id}:{REGISTERED}" in found and f"{movie_id}:{DELETED}" not in found

    async def record_registered(self, movie_id: str) -> None:
        await self._insert_once(movie_id, REGISTERED)

    async def record_deleted(self, movie_id: str) -> None:
        await self._insert_once(movie_id, DELETED)

    async def _insert_once(self, movie_id: str, what: str) -> None:
        # a repeat (a redelivery, another replica) hits the unique _id: applied before
        with contextlib.suppress(DuplicateKeyError):
            await self._movies.insert_one({"_id": f"{movie_id}:{what}", "movie_id": movie_id, "at": datetime.now(UTC)})
