"""The review store on MongoDB / FerretDB (pymongo's native async API).

Documents of the `reviews` collection:

    standing review   {_id: <review id>, review_id, movie_id, customer_id, author_name, rating, text,
                       created_at, state: "posted", author_key: "<movie id>/<customer id>", version: 1,
                       pending_events: [ReviewPosted until published]}
    tombstone         {_id: "<review id>:deleted", the same fields with state "deleted",
                       author_key: "deleted/<review id>", version: 2, deleted_at, deleted_by,
                       pending_events: [ReviewPosted if it was still pending, ReviewDeleted]}

Every write is one atomic write of one document holding a state of the review AND its pending
events (the kit's document outbox, services.kit.events.doc_outbox). No write updates a review:
FerretDB v1 (1.24, sqlite and postgresql handlers alike) does not isolate concurrent updates of
one document — measured: two clients each `$inc`-ing one field of one document 200 times left
102 and 87; conditional updates `{_id, v: n} -> v: n+1` reported 358 successes for 229 increments.
The relay's clearing (`$pullAll`) of a review would then overwrite a concurrent deletion's `$set`
with its stale copy, silently undoing the delete. Inserts are atomic (unique keys hold: `_id`,
`author_key`) and so are removals, hence:
- post = insert the standing review with ReviewPosted;
- delete = insert the tombstone (its `_id` is unique: of concurrent deletes exactly one wins, so
  ReviewDeleted exists once) carrying ReviewDeleted — and the review's ReviewPosted when it was
  still pending, so removing the standing document loses no event (if the relay publishes it
  from both documents, JetStream drops the repeat by event id) — then remove the standing review.
The relay's clearing then only ever races with that removal, which it cannot undo.

Tombstones are kept (their events wait in them; they also answer a late delete with NOT_FOUND).
If the process dies between inserting a tombstone and removing the standing review, the reads
heal it: a standing review with a tombstone counts as deleted (get, list, the author key) and is
removed when met.

Indexes (created by `ensure_indexes`, idempotent; every query here is served by one):
- `_id` (built in): get (review and tombstone in one `$in`), the tombstone check of a list page,
  removals, the relay's clearing;
- `author_key_unique` {author_key: 1}, unique: one standing review per customer per movie,
  and `find_by_author`;
- `movie_newest_first` {movie_id: 1, state: 1, created_at: -1, _id: -1}: ListReviews (the
  filter, the keyset condition and the sort);
- `pending_events_id` (the kit's): the relay's start-up search for documents with pending
  events; afterwards it reads the kit's marks (`outbox_pending`, index on `c`), which every
  write carrying events inserts just before the document (see services.kit.events.doc_outbox).
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

TOMBSTONE_SUFFIX = ":deleted"


def tombstone_id(review_id: str) -> str:
    return f"{review_id}{TOMBSTONE_SUFFIX}"


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
        "_id": tombstone_id(review.id) if review.is_deleted else review.id,
        "review_id": review.id,
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
        id=str(doc.get("review_id") or doc["_id"]),
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
            found = {
                doc["_id"]: doc
                async for doc in self._reviews.find(
                    {"_id": {"$in": [review_id, tombstone_id(review_id)]}}, REVIEW_FIELDS
                )
            }
        tombstone = found.get(tombstone_id(review_id))
        if tombstone is not None:
            if review_id in found:
                await self._remove_standing(review_id)
            return from_document(tombstone)
        standing = found.get(review_id)
        return from_document(standing) if standing is not None else None

    async def find_by_author(self, movie_id: str, customer_id: str) -> Review | None:
        async with _store_call(self._retry_after_s):
            doc = await self._reviews.find_one({"author_key": author_key(movie_id, customer_id)}, REVIEW_FIELDS)
        if doc is None:
            return None
        review = await self.get(str(doc["_id"]))  # a leftover of a deletion is healed here
        return review if review is not None and not review.is_deleted else None

    async def add(self, review: Review, events: Sequence[DomainEvent]) -> None:
        document = to_document(review)
        document[doc_outbox.FIELD] = [doc_outbox.pending_entry(envelope_for(event)) for event in events]
        async with _store_call(self._retry_after_s):
            mark = await self._mark(document)
        try:
            async with _store_call(self._retry_after_s):
                await self._reviews.insert_one(document)
        except DuplicateKeyError:
            await self._unmark(mark)
            raise DuplicateReview(review.id) from None

    async def record_deletion(self, review: Review, events: Sequence[DomainEvent]) -> bool:
        if not review.is_deleted:
            raise ValueError(f"review {review.id} is not deleted")
        async with _store_call(self._retry_after_s):
            standing = await self._reviews.find_one({"_id": review.id}, {doc_outbox.FIELD: 1})
        # Events of the standing review not yet published move into the tombstone, ahead of ours.
        carried = list(standing.get(doc_outbox.FIELD) or []) if standing is not None else []
        tombstone = to_document(review)
        tombstone[doc_outbox.FIELD] = carried + [doc_outbox.pending_entry(envelope_for(event)) for event in events]
        async with _store_call(self._retry_after_s):
            mark = await self._mark(tombstone)
        try:
            async with _store_call(self._retry_after_s):
                await self._reviews.insert_one(tombstone)
        except DuplicateKeyError:
            await self._unmark(mark)
            return False  # deleted already
        await self._remove_standing(review.id)
        return True

    async def _mark(self, document: Mapping[str, Any]) -> str | None:
        """The outbox's mark, written before the document it announces (see doc_outbox)."""
        ids = doc_outbox.event_ids(document[doc_outbox.FIELD])
        return await doc_outbox.mark(self._reviews, document["_id"], ids) if ids else None

    async def _unmark(self, mark: str | None) -> None:
        if mark is not None:
            await doc_outbox.unmark(self._reviews, mark)

    async def _remove_standing(self, review_id: str) -> None:
        """Remove a standing review whose tombstone exists (its events are in the tombstone)."""
        async with _store_call(self._retry_after_s):
            await self._reviews.delete_one({"_id": review_id, "state": ReviewState.POSTED.value})

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
        page = [from_document(doc) for doc in documents[:page_size]]
        more = len(documents) > page_size
        token = encode_page_token(movie_id, page[-1].created_at, page[-1].id) if more and page else ""
        deleted = await self._deleted_among([review.id for review in page])
        # A page may come out shorter than asked when it met a deletion's leftover (AIP-158 allows it).
        return ReviewPage(reviews=[r for r in page if r.id not in deleted], next_page_token=token)

    async def _deleted_among(self, review_ids: list[str]) -> set[str]:
        """Which of these standing reviews have a tombstone (left over by a crash), removing them."""
        if not review_ids:
            return set()
        async with _store_call(self._retry_after_s):
            cursor = self._reviews.find({"_id": {"$in": [tombstone_id(rid) for rid in review_ids]}}, {"_id": 1})
            deleted = {str(doc["_id"]).removesuffix(TOMBSTONE_SUFFIX) async for doc in cursor}
        for review_id in deleted:
            await self._remove_standing(review_id)
        return deleted
