"""Outbox for document stores (MongoDB / FerretDB): pending events ride in the aggregate.

MongoDB updates one document atomically, so a use case changes an aggregate and appends
its events to that document's `pending_events` array in the same `update_one`
(`pending_push` builds that part of the update). The relay publishes each document's pending
events in array order to JetStream and then pulls them from the array. Nothing is lost if a
process dies between the write and the publish: the events are still in the document. If it
dies between the publish and the pull, the events are published again on restart and
JetStream drops them by `Nats-Msg-Id` (the common case: not twice); consumers stay idempotent.

Finding the pending documents cheaply. FerretDB v1.24's SQLite backend pushes only an exact
`{_id: <string or ObjectId>}` filter down to SQLite; every other filter (`pending_events.id:
{$exists: true}` included) reads and decodes the whole collection in FerretDB, whatever the
indexes: a relay polling that way costs in proportion to the catalog, also when idle (measured:
0.35 of a core for FerretDB with two services polling every 0.5 s, 0.61 with more documents).
So each write that carries events first inserts a small *mark* into `outbox_pending`
(`mark`: {collection, document id, event ids}), and the relay looks there:
- woken by a write of its own process (`wake()`), and every `poll_interval_s` (a slow safety
  poll, for marks another replica left, e.g. one that died), it reads the marks of its
  collection (a scan of `outbox_pending`, i.e. O(pending)), then each marked document by `_id`
  (pushed down), publishes, clears, and removes the mark once its events are published;
- once per process, at start-up, it scans the whole collection (`publish_pending`), for events
  written before marks existed or whose mark was lost.
The mark is written before the aggregate, so a crash after the aggregate's write leaves a mark;
a crash between the two, or a write that did not apply (a lost compare-and-set: the writer calls
`unmark`), leaves a mark whose events never appear: it is dropped after `stale_mark_s`. The
atomicity of state and events is untouched: the events still ride in the aggregate's update; a
mark only says where to look. The marks are written by insert and removed by delete, never
updated (FerretDB's lack of isolation between updates, below, does not reach them).

Replicas: every relay publishes on its own process's wake-ups (each document's events go out
in array order whoever publishes them, and JetStream drops a repeat by event id); the safety
poll runs on the relay holding the lease document in `outbox_leases` (taken over when expired).

FerretDB v1 (our local and test MongoDB) does NOT apply concurrent updates of one document
atomically: updates arriving on different connections interleave and overwrite each other
(measured: 200 concurrent `$inc` ending at 16; a `$pullAll` here overwriting a concurrent
`$push`, losing an event). Updates sent over one connection are applied in order. So on
FerretDB a service must send all writes of a collection, the relay's included, over one
connection (a client with maxPoolSize=1, as the movie service does) and run one replica, or
write by insert/delete only (as the review service does). A real MongoDB (`MONGO_URL`)
applies each update atomically and needs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.client import JetStreamContext
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.aio import honour_cancellation, wait_event
from services.kit.events import jetstream
from services.kit.events.outbox_metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED

log = logging.getLogger("cinema.doc_outbox")

FIELD = "pending_events"
MARKS = "outbox_pending"  # one per database: {_id, c: collection, d: document id, e: [event ids], at}
LEASES = "outbox_leases"
# Event ids this relay published, remembered so that a mark whose events it already cleared
# (e.g. in the start-up scan) can go at once; bounded, older ones fall back to `stale_mark_s`.
_REMEMBERED_IDS = 10_000

Document = Mapping[str, Any]


def pending_entry(envelope: EventEnvelope) -> dict[str, Any]:
    """One element of a document's `pending_events` array."""
    return {
        "id": envelope.id,
        "type": envelope.type,
        "envelope": envelope.SerializeToString(deterministic=True),
        "at": datetime.now(UTC),
    }


def pending_push(*envelopes: EventEnvelope) -> dict[str, Any]:
    """The `$push` part of an update that records `envelopes` with the aggregate's change."""
    return {FIELD: {"$each": [pending_entry(e) for e in envelopes]}}


def event_ids(update_or_entries: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[str]:
    """The event ids of `pending_push(...)`'s result or of a list of `pending_entry(...)`."""
    if isinstance(update_or_entries, Mapping):
        return [str(e["id"]) for e in update_or_entries[FIELD]["$each"]]
    return [str(e["id"]) for e in update_or_entries]


async def mark(collection: AsyncCollection[Document], document_id: object, ids: Iterable[str]) -> str:
    """Note, BEFORE writing them, that events `ids` are about to ride in document `document_id`
    of `collection`; returns the mark's id (for `unmark` when the write does not apply)."""
    mark_id = uuid.uuid4().hex
    marks: AsyncCollection[Document] = collection.database[MARKS]
    await marks.insert_one(
        {"_id": mark_id, "c": collection.name, "d": document_id, "e": list(ids), "at": datetime.now(UTC)}
    )
    return mark_id


async def unmark(collection: AsyncCollection[Document], mark_id: str) -> None:
    """The write a mark announced did not apply (lost compare-and-set, duplicate key): drop the mark.
    Best effort: a mark left behind costs one lookup per relay pass until it is stale."""
    with contextlib.suppress(PyMongoError, OSError):
        await collection.database[MARKS].delete_one({"_id": mark_id})


async def ensure_indexes(collection: AsyncCollection[Document]) -> None:
    """On a real MongoDB these serve the start-up scan and the mark lookups (FerretDB v1's SQLite
    backend ignores indexes when querying; the marks keep its scans small instead)."""
    await collection.create_index([(f"{FIELD}.id", ASCENDING)], name="pending_events_id", sparse=True)
    await collection.database[MARKS].create_index([("c", ASCENDING)], name="collection")


@dataclass
class DocRelaySettings:
    service: str
    # The safety poll (marks of other replicas, e.g. one that died). Writes of this process wake
    # the relay at once, so this only bounds how late a dead replica's events go out; it costs a
    # scan of the marks (O(pending)), not of the collection.
    poll_interval_s: float = 30.0
    retry_s: float = 1.0  # after a failed pass (NATS or the store down)
    lease_s: float | None = None  # default: 3 safety polls, so the poller stays the same
    batch_documents: int = 100
    publish_timeout_s: float = 5.0
    stale_mark_s: float = 600.0  # a mark whose events never appeared (its write failed) is dropped

    @property
    def effective_lease_s(self) -> float:
        return self.lease_s if self.lease_s is not None else max(10.0, 3 * self.poll_interval_s)


class DocumentOutboxRelay:
    def __init__(
        self, db: AsyncDatabase[Document], collection: str, js: JetStreamContext, settings: DocRelaySettings
    ) -> None:
        self._db = db
        self._collection: AsyncCollection[Document] = db[collection]
        self._marks: AsyncCollection[Document] = db[MARKS]
        self._js = js
        self._settings = settings
        self._owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._lease_id = f"{settings.service}:{collection}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._published_ids: OrderedDict[str, None] = OrderedDict()
        self._behind = False  # a publish failed: some events wait (retry soon, not at the next poll)

    def wake(self) -> None:
        """Publish soon: a use case in this process just wrote pending events."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        scanned = False  # the start-up scan of the whole collection, once per process
        woken = False
        while not self._stopping.is_set():
            failed = False
            try:
                if not scanned:
                    await self.publish_pending()
                    scanned = True
                    due = True  # and the marks, at once (a previous life may have left some)
                else:
                    due = woken or self._behind or await self._hold_lease()
                if due:
                    await self.publish_marked()
            except (PyMongoError, OSError) as exc:
                failed = True
                log.warning("document outbox relay (%s): store unavailable (%s); retrying", self._lease_id, exc)
            pause = self._settings.retry_s if failed or self._behind else self._settings.poll_interval_s
            woken = await self._sleep(pause)
        with contextlib.suppress(PyMongoError, OSError):
            await self._db[LEASES].delete_one({"_id": self._lease_id, "owner": self._owner})

    async def _sleep(self, seconds: float) -> bool:
        woken = await wait_event(self._wake, seconds)
        self._wake.clear()
        return woken

    async def _hold_lease(self) -> bool:
        now = datetime.now(UTC)
        leases = self._db[LEASES]
        try:
            # Matches only a lease that is ours or has expired; otherwise the upsert collides
            # with the live lease of another relay.
            await leases.find_one_and_update(
                {"_id": self._lease_id, "$or": [{"owner": self._owner}, {"expires": {"$lt": now}}]},
                {"$set": {"owner": self._owner, "expires": now + timedelta(seconds=self._settings.effective_lease_s)}},
                upsert=True,
            )
        except DuplicateKeyError:  # another relay holds a live lease
            return False
        return True

    async def publish_pending(self) -> int:
        """The start-up scan: publish the pending events of every document, found by scanning the
        collection (O(collection) on FerretDB: once per process); returns how many were published.
        What it cannot publish (NATS down) it marks, so that the retries read the marks only."""
        self._behind = False
        cursor = self._collection.find({f"{FIELD}.id": {"$exists": True}}, {FIELD: 1})
        # Read them all before writing: the service may have a single connection to the store.
        documents = [doc async for doc in cursor if doc.get(FIELD)]
        self._observe(documents)
        published = 0
        for doc in documents:
            entries = list(doc[FIELD])
            if not self._behind:
                count, complete = await self._publish_document(doc)
                published += count
                if complete:
                    continue
                entries = entries[count:]
            await mark(self._collection, doc["_id"], event_ids(entries))
        return published

    async def publish_marked(self) -> int:
        """Publish the events of the marked documents (O(pending)); returns how many were published.
        Marks whose events are out (or that went stale) are removed."""
        self._behind = False
        by_document: dict[Any, list[Document]] = {}
        async for m in self._marks.find({"c": self._collection.name}):
            by_document.setdefault(m["d"], []).append(m)
        published = 0
        seen: list[Document] = []
        for document_id, marks in by_document.items():
            doc = await self._collection.find_one({"_id": document_id}, {FIELD: 1})
            entries: list[Mapping[str, Any]] = list(doc.get(FIELD) or []) if doc is not None else []
            count = 0
            if entries:
                seen.append({FIELD: entries})
                count, _ = await self._publish_document({"_id": document_id, FIELD: entries})
                published += count
            await self._drop_marks(marks, {str(e["id"]) for e in entries[count:]})
            if self._behind:
                break  # NATS is not taking events: the rest waits for the retry (no reads meanwhile)
        self._observe(seen)
        return published

    async def _drop_marks(self, marks: list[Document], still_pending: set[str]) -> None:
        """Remove the marks whose events are all published. An event absent from the document was
        either cleared (published) or not written yet (the write is in flight, or failed): only the
        first is certain when this relay published it; otherwise the mark waits until stale."""
        stale_before = datetime.now(UTC) - timedelta(seconds=self._settings.stale_mark_s)
        for m in marks:
            ids = {str(i) for i in m.get("e", ())}
            if ids & still_pending:
                continue
            at = m.get("at")
            stale = isinstance(at, datetime) and (at if at.tzinfo else at.replace(tzinfo=UTC)) < stale_before
            if stale or all(i in self._published_ids for i in ids):
                await self._marks.delete_one({"_id": m["_id"]})

    async def _publish_document(self, doc: Document) -> tuple[int, bool]:
        """Publish one document's pending events in order and clear them: (how many, all of them)."""
        done: list[Mapping[str, Any]] = []
        complete = True
        try:
            for entry in doc[FIELD]:
                envelope = EventEnvelope()
                envelope.ParseFromString(entry["envelope"])
                await jetstream.publish(self._js, envelope, ack_timeout_s=self._settings.publish_timeout_s)
                done.append(entry)
                honour_cancellation()  # nats-py may have swallowed one (see services.kit.aio)
        except Exception as exc:  # NATS down or slow: keep this document's order, retry later
            log.warning("document outbox relay: publish failed (%s); will retry", exc)
            complete = False
            self._behind = True
        return await self._clear(doc["_id"], done), complete

    def _observe(self, documents: list[Document]) -> None:
        """Backlog and age from the documents just read (a lower bound when a batch is full)."""
        stamps = [entry.get("at") for doc in documents for entry in doc.get(FIELD) or ()]
        labels = (self._settings.service, self._collection.name)
        OUTBOX_BACKLOG.labels(*labels).set(len(stamps))
        times = [at if at.tzinfo else at.replace(tzinfo=UTC) for at in stamps if isinstance(at, datetime)]
        oldest = (datetime.now(UTC) - min(times)).total_seconds() if times else 0.0
        OUTBOX_OLDEST_AGE.labels(*labels).set(max(0.0, oldest))

    async def _clear(self, doc_id: object, entries: list[Mapping[str, Any]]) -> int:
        """Remove the published entries. `$pullAll` with the entries exactly as read: FerretDB
        v1 ignores the conditions of a `$pull` (it removes nothing), but matches whole values."""
        if not entries:
            return 0
        await self._collection.update_one({"_id": doc_id}, {"$pullAll": {FIELD: entries}})
        OUTBOX_PUBLISHED.labels(self._settings.service, self._collection.name).inc(len(entries))
        for entry in entries:
            self._published_ids[str(entry["id"])] = None
        while len(self._published_ids) > _REMEMBERED_IDS:
            self._published_ids.popitem(last=False)
        return len(entries)


__all__ = [
    "DocRelaySettings",
    "DocumentOutboxRelay",
    "ensure_indexes",
    "event_ids",
    "mark",
    "pending_entry",
    "pending_push",
    "unmark",
]
