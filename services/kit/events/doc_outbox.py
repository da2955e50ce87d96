"""Outbox for document stores (MongoDB / FerretDB): pending events ride in the aggregate.

MongoDB updates one document atomically, so a use case changes an aggregate and appends
its events to that document's `pending_events` array in the same `update_one`
(`pending_push` builds that part of the update). The relay publishes each document's pending
events in array order to JetStream and then pulls them from the array. Nothing is lost if a
process dies between the write and the publish: the events are still in the document. If it
dies between the publish and the pull, the events are published again on restart and
JetStream drops them by `Nats-Msg-Id` (the common case: not twice); consumers stay idempotent.

One relay leads per collection at a time, through a lease document in `outbox_leases`
(renewed while leading, taken over when it expires), so replicas do not publish in parallel.

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
from collections.abc import Mapping
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


async def ensure_indexes(collection: AsyncCollection[Mapping[str, Any]]) -> None:
    """The relay's query (documents that have pending events) uses this index."""
    await collection.create_index([(f"{FIELD}.id", ASCENDING)], name="pending_events_id", sparse=True)


@dataclass
class DocRelaySettings:
    service: str
    poll_interval_s: float = 0.5
    lease_s: float = 10.0
    batch_documents: int = 100
    publish_timeout_s: float = 5.0


class DocumentOutboxRelay:
    def __init__(
        self, db: AsyncDatabase[Mapping[str, Any]], collection: str, js: JetStreamContext, settings: DocRelaySettings
    ) -> None:
        self._db = db
        self._collection: AsyncCollection[Mapping[str, Any]] = db[collection]
        self._js = js
        self._settings = settings
        self._owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._lease_id = f"{settings.service}:{collection}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """Publish soon: a use case in this process just wrote pending events."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if await self._hold_lease():
                    published = await self.publish_pending()
                    if published:
                        continue  # more may be waiting
            except (PyMongoError, OSError) as exc:
                log.warning("document outbox relay (%s): store unavailable (%s); retrying", self._lease_id, exc)
            await self._sleep(self._settings.poll_interval_s)
        with contextlib.suppress(PyMongoError, OSError):
            await self._db["outbox_leases"].delete_one({"_id": self._lease_id, "owner": self._owner})

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)
        self._wake.clear()

    async def _hold_lease(self) -> bool:
        now = datetime.now(UTC)
        leases = self._db["outbox_leases"]
        try:
            # Matches only a lease that is ours or has expired; otherwise the upsert collides
            # with the live lease of another relay.
            await leases.find_one_and_update(
                {"_id": self._lease_id, "$or": [{"owner": self._owner}, {"expires": {"$lt": now}}]},
                {"$set": {"owner": self._owner, "expires": now + timedelta(seconds=self._settings.lease_s)}},
                upsert=True,
            )
        except DuplicateKeyError:  # another relay holds a live lease
            return False
        return True

    async def publish_pending(self) -> int:
        """Publish the pending events of a batch of documents; returns how many were published."""
        published = 0
        cursor = self._collection.find(
            {f"{FIELD}.id": {"$exists": True}}, {FIELD: 1}, limit=self._settings.batch_documents
        )
        documents = [doc async for doc in cursor]
        self._observe(documents)
        for doc in documents:
            done: list[Mapping[str, Any]] = []
            try:
                for entry in doc[FIELD]:
                    envelope = EventEnvelope()
                    envelope.ParseFromString(entry["envelope"])
                    await jetstream.publish(self._js, envelope, ack_timeout_s=self._settings.publish_timeout_s)
                    done.append(entry)
                    honour_cancellation()  # nats-py may have swallowed one (see services.kit.aio)
            except Exception as exc:  # NATS down or slow: keep this document's order, retry later
                log.warning("document outbox relay: publish failed (%s); will retry", exc)
                return published + await self._clear(doc["_id"], done)
            published += await self._clear(doc["_id"], done)
        return published

    def _observe(self, documents: list[Mapping[str, Any]]) -> None:
        """Backlog and age from the documents just read (a lower bound when a batch is full)."""
        stamps = [entry.get("at") for doc in documents for entry in doc[FIELD]]
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
        return len(entries)


__all__ = ["DocRelaySettings", "DocumentOutboxRelay", "ensure_indexes", "pending_entry", "pending_push"]
