"""The catalog's store on MongoDB (FerretDB locally): movies, screenings and halls.

Every write is one atomic update of one document, made conditional so that it is safe to
repeat and safe against concurrent writers (FerretDB has no multi-document transactions):
- movies and screenings are written by compare-and-set (movie `version`, screening `revision`),
  and their pending events ride in the same update (`pending_events`, the document outbox of
  services.kit.events.doc_outbox, published and cleared by its relay);
- a hall's bookings live in one document per hall, changed by compare-and-set on its revision;
- review events change a movie's count and rating sum together with a per-review entry in the
  movie's `reviews` map (`reviews.<review id>` = {s: counted|deleted, r: rating}), each update
  guarded by that entry's state, so each review is counted once and uncounted once.

FerretDB v1 ignores the conditions of `$pull` and indexes an array as one value (no multikey
unique index), so none of that is used here. Worse, it applies an update as read-modify-write
with no isolation between connections (200 concurrent `$inc` of one document counted 16; a
relay's `$pullAll` racing a `$push` dropped the pushed event): the service therefore talks to
the store over one connection by default (MOVIE_MONGO_MAX_POOL_SIZE), which serializes its
operations; on a real MongoDB every update below is atomic on its own. `INDEXES` lists every index, and `QUERIES` the
filter and sort fields of every query this module makes; tests check that each is covered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.kit.events import doc_outbox
from services.movie.adapters.events import envelope_of
from services.movie.domain.events import CatalogEvent
from services.movie.domain.movie import Movie, MovieDetails
from services.movie.domain.reviews import Outcome, ReviewEntry
from services.movie.domain.screening import Booking, PendingClaim, Screening, ScreeningState
from services.movie.domain.values import Money, SeatMap
from services.movie.service_layer.ports import HallBookings, MovieQuery, ScreeningQuery

Document = Mapping[str, Any]
Database = AsyncDatabase[Document]

MOVIES = "movies"
SCREENINGS = "screenings"
HALLS = "halls"
# Notes of movie deletions whose screenings are still to cancel, {_id: movie id, at}: written
# before the movie's `screenings_to_cancel` flag and removed after the flag is cleared, so the
# sweeper reads these few instead of scanning the movies (FerretDB's SQLite backend answers any
# filter but `{_id}` by reading the whole collection, indexes or not). A note whose movie never
# got the flag (the delete lost its compare-and-set, or the process died in between) goes after
# SWEEP_NOTE_STALE.
SWEEPS = "deletions_to_finish"
SWEEP_NOTE_STALE = timedelta(minutes=10)

# Every index the service creates: collection -> [(name, keys)]. `_id` is always indexed.
INDEXES: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {
    MOVIES: [
        ("live_by_title", [("deleted", ASCENDING), ("title", ASCENDING), ("_id", ASCENDING)]),
        ("genre_by_title", [("genres", ASCENDING), ("deleted", ASCENDING), ("title", ASCENDING), ("_id", ASCENDING)]),
        ("screenings_to_cancel", [("screenings_to_cancel", ASCENDING)]),
    ],
    SCREENINGS: [
        (
            "movie_state_start",
            [("movie_id", ASCENDING), ("state", ASCENDING), ("starts_at", ASCENDING), ("_id", ASCENDING)],
        ),
        ("state_start", [("state", ASCENDING), ("starts_at", ASCENDING)]),
    ],
    HALLS: [],
}
# The fields each query filters and sorts on, in index order (what the index test checks).
QUERIES: dict[str, list[tuple[str, ...]]] = {
    MOVIES: [
        ("_id",),  # get, save, review updates
        ("deleted", "title", "_id"),  # list
        ("genres", "deleted", "title", "_id"),  # list by genre
        ("screenings_to_cancel",),  # deletion sweep, once per process (then SWEEPS)
        ("pending_events.id",),  # outbox relay, once per process (then doc_outbox.MARKS)
    ],
    SCREENINGS: [
        ("_id",),  # get, save
        ("movie_id", "state", "starts_at", "_id"),  # list of a movie, scheduled after, retitle (prefix)
        ("state", "starts_at"),  # movies showing on a date
        ("pending_events.id",),  # outbox relay, once per process (then doc_outbox.MARKS)
    ],
    HALLS: [("_id",)],
    # The outbox relay's marks of one collection (its index: doc_outbox.ensure_indexes). SWEEPS
    # is read whole (a handful of notes) and written by `_id` only.
    doc_outbox.MARKS: [("c",)],
}

_MOVIE_READ = {"reviews": 0, doc_outbox.FIELD: 0}
_SCREENING_READ = {doc_outbox.FIELD: 0}


async def ensure_indexes(db: Database) -> None:
    """Create every index (idempotent: an existing index of the same name and keys is kept)."""
    for collection, indexes in INDEXES.items():
        for name, keys in indexes:
            await db[collection].create_index(keys, name=name)
    for collection in (MOVIES, SCREENINGS):
        await doc_outbox.ensure_indexes(db[collection])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _events(events: Sequence[CatalogEvent]) -> dict[str, Any]:
    return doc_outbox.pending_push(*(envelope_of(e) for e in events))


async def _mark(collection: AsyncCollection[Document], doc_id: str, events: Any) -> str | None:
    """The outbox's mark for a write carrying events (`pending_push(...)` or entries), or None."""
    ids = doc_outbox.event_ids(events) if events else []
    return await doc_outbox.mark(collection, doc_id, ids) if ids else None


async def _unmark(collection: AsyncCollection[Document], mark: str | None) -> None:
    if mark is not None:
        await doc_outbox.unmark(collection, mark)


async def _note_deletion(sweeps: AsyncCollection[Document], movie_id: str) -> None:
    with contextlib.suppress(DuplicateKeyError):  # a retried delete noted it already
        await sweeps.insert_one({"_id": movie_id, "at": datetime.now(UTC)})


# --------------------------------------------------------------------------------- movies


def _movie_fields(movie: Movie) -> dict[str, Any]:
    d = movie.details
    return {
        "title": d.title,
        "description": d.description,
        "genres": list(d.genres),
        "duration_minutes": d.duration_minutes,
        "poster_url": d.poster_url,
        "created_at": movie.created_at,
        "updated_at": movie.updated_at,
        "version": movie.version,
        "deleted": movie.deleted,
    }


def _movie(doc: Document) -> Movie:
    return Movie(
        id=doc["_id"],
        details=MovieDetails(
            title=doc["title"],
            description=doc.get("description", ""),
            genres=tuple(doc.get("genres", ())),
            duration_minutes=doc["duration_minutes"],
            poster_url=doc.get("poster_url", ""),
        ),
        created_at=_aware(doc["created_at"]),
        updated_at=_aware(doc["updated_at"]),
        version=doc["version"],
        deleted=doc.get("deleted", False),
        review_count=doc.get("review_count", 0),
        rating_sum=doc.get("rating_sum", 0),
    )


class MongoMovies:
    def __init__(self, db: Database) -> None:
        self._c: AsyncCollection[Document] = db[MOVIES]
        self._sweeps: AsyncCollection[Document] = db[SWEEPS]
        self._swept_once = False

    async def get(self, movie_id: str) -> Movie | None:
        doc = await self._c.find_one({"_id": movie_id}, _MOVIE_READ)
        return _movie(doc) if doc is not None else None

    async def add(self, movie: Movie) -> bool:
        doc = {"_id": movie.id, **_movie_fields(movie), "review_count": 0, "rating_sum": 0, "reviews": {}}
        doc[doc_outbox.FIELD] = [doc_outbox.pending_entry(envelope_of(e)) for e in movie.pending]
        mark = await _mark(self._c, movie.id, doc[doc_outbox.FIELD])
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            await _unmark(self._c, mark)
            return False
        movie.pending.clear()
        return True

    async def save(self, movie: Movie, expected_version: int) -> bool:
        fields = _movie_fields(movie)
        if movie.deleted:
            fields["screenings_to_cancel"] = True
        update: dict[str, Any] = {"$set": fields}
        if movie.pending:
            update["$push"] = _events(movie.pending)
        mark = await _mark(self._c, movie.id, update.get("$push"))
        if movie.deleted:
            await _note_deletion(self._sweeps, movie.id)  # before the flag, as marks go (see SWEEPS)
        result = await self._c.update_one({"_id": movie.id, "version": expected_version}, update)
        if result.matched_count == 0:
            await _unmark(self._c, mark)
            return False
        movie.pending.clear()
        return True

    async def list(self, query: MovieQuery) -> Sequence[Movie]:
        where: dict[str, Any] = {"deleted": False}
        if query.genre:
            where["genres"] = query.genre
        if query.only_ids is not None:
            where["_id"] = {"$in": sorted(query.only_ids)}
        if query.after is not None:
            title, last_id = query.after
            where["$or"] = [{"title": {"$gt": title}}, {"title": title, "_id": {"$gt": last_id}}]
        cursor = self._c.find(where, _MOVIE_READ).sort([("title", ASCENDING), ("_id", ASCENDING)])
        return [_movie(doc) async for doc in cursor.limit(query.page_size + 1)]

    async def record_review_posted(self, movie_id: str, review_id: str, rating: int) -> Outcome | None:
        key = f"reviews.{review_id}"
        result = await self._c.update_one(
            {"_id": movie_id, key: {"$exists": False}},
            {
                "$set": {key: {"s": ReviewEntry.COUNTED.value, "r": rating}},
                "$inc": {"review_count": 1, "rating_sum": rating},
            },
        )
        if result.matched_count:
            return Outcome.COUNTED
        if await self._c.find_one({"_id": movie_id}, {"_id": 1}) is None:
            return None
        return Outcome.UNCHANGED  # counted before, or deleted before it was posted

    async def record_review_deleted(self, movie_id: str, review_id: str) -> Outcome | None:
        key = f"reviews.{review_id}"
        while True:  # each round either applies or sees a state another delivery just wrote
            doc = await self._c.find_one({"_id": movie_id}, {key: 1})
            if doc is None:
                return None
            entry = doc.get("reviews", {}).get(review_id)
            if entry is None:
                # Delete before post: leave a tombstone, so that the late post is ignored.
                tombstone = await self._c.update_one(
                    {"_id": movie_id, key: {"$exists": False}},
                    {"$set": {key: {"s": ReviewEntry.DELETED.value, "r": 0}}},
                )
                if tombstone.matched_count:
                    return Outcome.TOMBSTONED
                continue
            if entry.get("s") != ReviewEntry.COUNTED.value:
                return Outcome.UNCHANGED
            rating = int(entry.get("r", 0))
            uncount = await self._c.update_one(
                {"_id": movie_id, f"{key}.s": ReviewEntry.COUNTED.value, f"{key}.r": rating},
                {"$set": {f"{key}.s": ReviewEntry.DELETED.value}, "$inc": {"review_count": -1, "rating_sum": -rating}},
            )
            if uncount.matched_count:
                return Outcome.UNCOUNTED

    async def deleted_with_screenings_to_cancel(self, limit: int) -> Sequence[str]:
        """The deleted movies whose screenings are still to cancel, from the notes in SWEEPS
        (O(unfinished deletions)); the first call of a process scans the movies once (O(catalog)
        on FerretDB) and notes what it finds, for flags set before the notes existed."""
        if not self._swept_once:
            cursor = self._c.find({"screenings_to_cancel": True}, {"_id": 1})
            for movie_id in [doc["_id"] async for doc in cursor]:
                await _note_deletion(self._sweeps, movie_id)
            self._swept_once = True
        stale_before = datetime.now(UTC) - SWEEP_NOTE_STALE
        found: list[str] = []
        for note in [doc async for doc in self._sweeps.find({})]:
            if len(found) >= limit:
                break
            movie = await self._c.find_one({"_id": note["_id"]}, {"screenings_to_cancel": 1})
            if movie is not None and movie.get("screenings_to_cancel"):
                found.append(note["_id"])
            elif _aware(note["at"]) < stale_before:  # the delete it announced never applied
                await self._sweeps.delete_one({"_id": note["_id"]})
        return found

    async def screenings_cancelled(self, movie_id: str) -> None:
        await self._c.update_one({"_id": movie_id}, {"$unset": {"screenings_to_cancel": ""}})
        await self._sweeps.delete_one({"_id": movie_id})


# ----------------------------------------------------------------------------- screenings


def _claim_doc(claim: PendingClaim | None) -> dict[str, Any] | None:
    if claim is None:
        return None
    return {
        "claim_id": claim.claim_id,
        "hall": claim.hall,
        "starts_at": claim.starts_at,
        "ends_at": claim.ends_at,
        "duration_minutes": claim.duration_minutes,
        "since": claim.since,
    }


def _claim(doc: Document | None) -> PendingClaim | None:
    if not doc:
        return None
    return PendingClaim(
        claim_id=doc["claim_id"],
        hall=doc["hall"],
        starts_at=_aware(doc["starts_at"]),
        ends_at=_aware(doc["ends_at"]),
        duration_minutes=doc["duration_minutes"],
        since=_aware(doc["since"]),
    )


def _screening_fields(s: Screening) -> dict[str, Any]:
    return {
        "movie_id": s.movie_id,
        "movie_title": s.movie_title,
        "duration_minutes": s.duration_minutes,
        "hall": s.hall,
        "starts_at": s.starts_at,
        "seat_map": {
            "rows": s.seat_map.rows,
            "seats_per_row": s.seat_map.seats_per_row,
            "blocked": list(s.seat_map.blocked),
        },
        "price": {"minor_units": s.price.minor_units, "currency": s.price.currency},
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "state": s.state.value,
        "version": s.version,
        "claim_id": s.claim_id,
        "pending_claim": _claim_doc(s.pending_claim),
        "cancel_reason": s.cancel_reason,
    }


def _screening(doc: Document) -> Screening:
    seat_map, price = doc["seat_map"], doc["price"]
    return Screening(
        id=doc["_id"],
        movie_id=doc["movie_id"],
        movie_title=doc["movie_title"],
        duration_minutes=doc["duration_minutes"],
        hall=doc["hall"],
        starts_at=_aware(doc["starts_at"]),
        seat_map=SeatMap(seat_map["rows"], seat_map["seats_per_row"], tuple(seat_map.get("blocked", ()))),
        price=Money(price["minor_units"], price["currency"]),
        created_at=_aware(doc["created_at"]),
        updated_at=_aware(doc["updated_at"]),
        state=ScreeningState(doc["state"]),
        version=doc["version"],
        claim_id=doc.get("claim_id", ""),
        pending_claim=_claim(doc.get("pending_claim")),
        cancel_reason=doc.get("cancel_reason", ""),
        revision=doc["revision"],
    )


_VISIBLE = [ScreeningState.SCHEDULED.value, ScreeningState.CANCELLED.value]


class MongoScreenings:
    def __init__(self, db: Database) -> None:
        self._c: AsyncCollection[Document] = db[SCREENINGS]

    async def get(self, screening_id: str) -> Screening | None:
        doc = await self._c.find_one({"_id": screening_id}, _SCREENING_READ)
        return _screening(doc) if doc is not None else None

    async def add(self, screening: Screening) -> bool:
        doc = {"_id": screening.id, **_screening_fields(screening), "revision": 1}
        doc[doc_outbox.FIELD] = [doc_outbox.pending_entry(envelope_of(e)) for e in screening.pending]
        mark = await _mark(self._c, screening.id, doc[doc_outbox.FIELD])
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            await _unmark(self._c, mark)
            return False
        screening.revision = 1
        screening.pending.clear()
        return True

    async def save(self, screening: Screening) -> bool:
        update: dict[str, Any] = {"$set": {**_screening_fields(screening), "revision": screening.revision + 1}}
        if screening.pending:
            update["$push"] = _events(screening.pending)
        mark = await _mark(self._c, screening.id, update.get("$push"))
        result = await self._c.update_one({"_id": screening.id, "revision": screening.revision}, update)
        if result.matched_count == 0:
            await _unmark(self._c, mark)
            return False
        screening.revision += 1
        screening.pending.clear()
        return True

    async def list_for_movie(self, query: ScreeningQuery) -> Sequence[Screening]:
        states = _VISIBLE if query.include_cancelled else [ScreeningState.SCHEDULED.value]
        where: dict[str, Any] = {"movie_id": query.movie_id, "state": {"$in": states}}
        if query.after is not None:
            start, last_id = query.after
            where["$or"] = [{"starts_at": {"$gt": start}}, {"starts_at": start, "_id": {"$gt": last_id}}]
        cursor = self._c.find(where, _SCREENING_READ).sort([("starts_at", ASCENDING), ("_id", ASCENDING)])
        return [_screening(doc) async for doc in cursor.limit(query.page_size + 1)]

    async def scheduled_after(self, movie_id: str, after: datetime) -> Sequence[Screening]:
        cursor = self._c.find(
            {"movie_id": movie_id, "state": ScreeningState.SCHEDULED.value, "starts_at": {"$gt": after}},
            _SCREENING_READ,
        )
        return [_screening(doc) async for doc in cursor]

    async def movies_showing_between(self, start: datetime, end: datetime) -> frozenset[str]:
        cursor = self._c.find(
            {"state": ScreeningState.SCHEDULED.value, "starts_at": {"$gte": start, "$lt": end}}, {"movie_id": 1}
        )
        return frozenset([doc["movie_id"] async for doc in cursor])

    async def retitle(self, movie_id: str, title: str) -> None:
        await self._c.update_many({"movie_id": movie_id}, {"$set": {"movie_title": title}})


# ---------------------------------------------------------------------------------- halls


class MongoHalls:
    def __init__(self, db: Database) -> None:
        self._c: AsyncCollection[Document] = db[HALLS]

    async def get(self, hall: str) -> HallBookings:
        doc = await self._c.find_one({"_id": hall})
        if doc is None:
            return HallBookings(hall, 0, ())
        bookings = [
            Booking(claim_id, entry["screening_id"], _aware(entry["starts_at"]), _aware(entry["ends_at"]))
            for claim_id, entry in (doc.get("bookings") or {}).items()
        ]
        return HallBookings(hall, doc["revision"], bookings)

    async def change(self, hall: str, expected_revision: int, add: Booking | None, remove: Sequence[str]) -> bool:
        entry = (
            {"screening_id": add.screening_id, "starts_at": add.starts_at, "ends_at": add.ends_at}
            if add is not None
            else None
        )
        if expected_revision == 0:
            try:
                await self._c.insert_one(
                    {"_id": hall, "revision": 1, "bookings": {add.claim_id: entry} if add and entry else {}}
                )
            except DuplicateKeyError:  # another writer booked this hall first
                return False
            return True
        update: dict[str, Any] = {"$set": {"revision": expected_revision + 1}}
        if add is not None:
            update["$set"][f"bookings.{add.claim_id}"] = entry
        gone = {f"bookings.{claim_id}": "" for claim_id in set(remove) if add is None or claim_id != add.claim_id}
        if gone:
            update["$unset"] = gone
        result = await self._c.update_one({"_id": hall, "revision": expected_revision}, update)
        return result.matched_count == 1

    async def release(self, hall: str, claim_id: str) -> None:
        if claim_id:
            await self._c.update_one({"_id": hall}, {"$unset": {f"bookings.{claim_id}": ""}, "$inc": {"revision": 1}})
