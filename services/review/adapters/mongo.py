"""The review store on MongoDB / FerretDB (pymongo's native async API).

One document per review in the `reviews` collection, `_id` = review id:

    {_id, movie_id, customer_id, author_name, rating, text, created_at, state: "posted"|"deleted",
     author_key, version, deleted_at, deleted_by, pending_events: [...]}

Every write is one atomic write of one document holding the review's new state AND its pending
events (the kit's document outbox, services.kit.events.doc_outbox): an insert for a new review,
an `update_one` guarded by the loaded version for a deletion. FerretDB v1 has no multi-document
transactions, and needs none here.

A deleted review stays as a tombstone (state `deleted`): its ReviewDeleted waits in the same
document until the relay has published it, and reads filter tombstones out. Tombstones are
kept (a few hundred bytes each; they also answer a late retry of the delete with NOT_FOUND).

Uniqueness lives in the database, so that concurrent posts cannot both win: `author_key` is
`<movie_id>/<customer_id>` on a standing review and `deleted/<review_id>` on a tombstone (a
unique index without a partial filter, which FerretDB v1 lacks), so a customer who deleted their
review may post a new one.

Indexes (created by `ensure_indexes`, idempotent; every query here is served by one):
- `_id` (built in): get, the guarded update of a deletion, the relay's clearing;
- `author_key_unique` {author_key: 1}, unique: one standing review per customer per movie,
  and `find_by_author`;
- `movie_newest_first` {movie_id: 1, state: 1, created_at: -1, _id: -1}: ListReviews (the
  filter, the keyset condition and the sort);
- `pending_events_id` (the kit's): the relay's search for documents with pending events.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from services.kit.errors import InvalidArgument, Unavailable
from services.kit.events import doc_outbox
from services.review.adapters.events import envelope_for
from services.review.domain.events import DomainEvent
from services.review.domain.review import Review, ReviewState, author_key
from services.review.service_layer.ports import DuplicateReview, ReviewPage

COLLECTION = "reviews"

INDEXES = (
    IndexModel([("author_key", ASCENDING)], name="author_key_unique", unique=True),
    IndexModel(
        [("movie_id", ASCENDING), ("state", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
        name="movie_newest_first",
    ),
)
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
# Reads never need the pending events (they can be large, and are the relay's business).
REVIEW_FIELDS = {doc_outbox.FIELD: 0}

Document = Mapping[str, Any]


async def ensure_indexes(db: AsyncDatabase[Document]) -> list[str]:
    """Create the review indexes and the outbox's (idempotent); returns the review index names."""
    reviews: AsyncCollection[Document] = db[COLLECTION]
    names: list[str] = []
    # One index per command: FerretDB v1.24 drops the connection (a panic on its side) when one
    # createIndexes names several indexes that all exist already, i.e. on every restart.
    for index in INDEXES:
        names += await reviews.create_indexes([index])
    await doc_outbox.ensure_indexes(reviews)
    return names


def to_millis(when: datetime) -> datetime:
    """BSON dates keep milliseconds: the clock hands out times that survive the round trip, so
    the review a use case returns equals the one read back, and page tokens compare exactly."""
    when = when.astimezone(UTC)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _utc(when: datetime) -> datetime:
    # A client opened without tz_aware=True hands back naive datetimes, which are UTC.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def to_document(review: Review) -> dict[str, Any]:
    return {
        "_id": review.id,
        "movie_id": review.movie_id,
        "customer_id": review.customer_id,
        "author_name": review.author_name,
        "rating": review.rating,
        "text": review.text,
        "created_at": review.created_at,
        "state": review.state.value,
        "author_key": review.author_key,
        "version": review.version,
        "deleted_at": review.deleted_at,
        "deleted_by": review.deleted_by,
    }


def from_document(doc: Document) -> Review:
    deleted_at = doc.get("deleted_at")
    return Review(
        id=str(doc["_id"]),
        movie_id=str(doc["movie_id"]),
        customer_id=str(doc["customer_id"]),
        author_name=str(doc.get("author_name") or ""),
        rating=int(doc["rating"]),
        text=str(doc.get("text") or ""),
        created_at=_utc(doc["created_at"]),
        state=ReviewState(doc["state"]),
        version=int(doc["version"]),
        deleted_at=_utc(deleted_at) if isinstance(deleted_at, datetime) else None,
        deleted_by=doc.get("deleted_by"),
    )


# ------------------------------------------------------------------------------ page tokens


def encode_page_token(movie_id: str, created_at: datetime, review_id: str) -> str:
    """An opaque keyset token: the movie, and the (created_at ms, id) of the last review of a page."""
    millis = int(_utc(created_at).timestamp() * 1000)
    raw = json.dumps([movie_id, millis, review_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, movie_id: str) -> tuple[datetime, str]:
    """The position a token stands for; InvalidArgument on `page_token` when it is not one we
    issued for this movie."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        token_movie, millis, review_id = json.loads(raw)
        if not isinstance(millis, int) or not isinstance(review_id, str) or not isinstance(token_movie, str):
            raise ValueError("malformed")
        created_at = datetime.fromtimestamp(millis / 1000, UTC)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError, OSError):
        raise InvalidArgument.for_field("page_token", "not a token this service issued") from None
    if token_movie != movie_id:
        raise InvalidArgument.for_field("page_token", "was issued for the reviews of another movie")
    return to_millis(created_at), review_id


# ------------------------------------------------------------------------------ the store


@asynccontextmanager
async def _store_call(retry_after_s: float) -> AsyncIterator[None]:
    """A store that cannot be reached is UNAVAILABLE with a retry hint, not INTERNAL."""
    try:
        yield
    except ConnectionFailure as exc:  # server selection timeout, network error, auto-reconnect
        raise Unavailable(
            f"the review store is unavailable ({type(exc).__name__})",
            retry_after_s=retry_after_s,
            reason="STORE_UNAVAILABLE",
        ) from exc


class MongoReviewRepository:
    """ReviewRepository port on one MongoDB database."""

    def __init__(self, db: AsyncDatabase[Document], retry_after_s: float = 1.0) -> None:
        self._reviews: AsyncCollection[Document] = db[COLLECTION]
        self._retry_after_s = retry_after_s

    async def get(self, review_id: str) -> Review | None:
        async with _store_call(self._retry_after_s):
            doc = await self._reviews.find_one({"_id": review_id}, REVIEW_FIELDS)
        return from_document(doc) if doc is not None else None

    async def find_by_author(self, movie_id: str, customer_id: str) -> Review | None:
        async with _store_call(self._retry_after_s):
            doc = await self._reviews.find_one({"author_key": author_key(movie_id, customer_id)}, REVIEW_FIELDS)
        return from_document(doc) if doc is not None else None

    async def add(self, review: Review, events: Sequence[DomainEvent]) -> None:
        document = to_document(review)
        document[doc_outbox.FIELD] = [doc_outbox.pending_entry(envelope_for(event)) for event in events]
        try:
            async with _store_call(self._retry_after_s):
                await self._reviews.insert_one(document)
        except DuplicateKeyError:
            raise DuplicateReview(review.id) from None

    async def update(self, review: Review, expected_version: int, events: Sequence[DomainEvent]) -> bool:
        state = to_document(review)
        del state["_id"]
        update: dict[str, Any] = {"$set": state}
        if events:
            update["$push"] = doc_outbox.pending_push(*(envelope_for(event) for event in events))
        async with _store_call(self._retry_after_s):
            result = await self._reviews.update_one({"_id": review.id, "version": expected_version}, update)
        return result.matched_count == 1

    async def list_for_movie(self, movie_id: str, page_size: int, page_token: str) -> ReviewPage:
        query: dict[str, Any] = {"movie_id": movie_id, "state": ReviewState.POSTED.value}
        if page_token:
            created_at, after_id = decode_page_token(page_token, movie_id)
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": after_id}},
            ]
        async with _store_call(self._retry_after_s):
            cursor = self._reviews.find(query, REVIEW_FIELDS, sort=NEWEST_FIRST, limit=page_size + 1)
            documents = [doc async for doc in cursor]
        reviews = [from_document(doc) for doc in documents[:page_size]]
        more = len(documents) > page_size
        token = encode_page_token(movie_id, reviews[-1].created_at, reviews[-1].id) if more and reviews else ""
        return ReviewPage(reviews=reviews, next_page_token=token)
