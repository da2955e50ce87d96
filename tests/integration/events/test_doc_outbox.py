"""The document outbox on FerretDB (MongoDB wire protocol) and NATS: events ride in the
aggregate's document, the relay publishes them in order and clears them; a relay that died
after publishing loses nothing and JetStream drops the repeat."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1.events_pb2 import ReviewPosted
from services.kit.events import doc_outbox, jetstream
from services.kit.events import envelope as env
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url)
    js = nc.jetstream()
    for config in jetstream.stream_configs():
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(config.name or "")
    await jetstream.ensure_streams(js)
    yield js
    await nc.close()


@pytest.fixture
async def db(mongo_server: Server) -> AsyncIterator[AsyncDatabase[Mapping[str, Any]]]:
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url)
    name = f"{mongo_server.extra['db_prefix']}docoutbox_{uuid.uuid4().hex[:8]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


def posted(review_id: str, version: int) -> EventEnvelope:
    event = ReviewPosted(review_id=review_id, movie_id="m1", rating=4)
    return env.wrap(event, source="cinema/review", subject=review_id, aggregate_id=review_id, aggregate_version=version)


async def read_all(js: JetStreamContext, expected: int) -> list[EventEnvelope]:
    sub = await js.pull_subscribe("cinema.review.posted", durable=f"check-{uuid.uuid4().hex[:6]}")
    got: list[EventEnvelope] = []
    for _ in range(20):
        try:
            msgs = await sub.fetch(max(1, expected - len(got) + 1), timeout=0.5)
        except TimeoutError:
            if len(got) >= expected:
                break
            continue
        for m in msgs:
            got.append(env.decode(m.data))
            await m.ack()
    return got


async def test_pending_events_are_published_in_order_and_cleared(
    db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext
) -> None:
    reviews = db["reviews"]
    await doc_outbox.ensure_indexes(reviews)
    envelopes: list[EventEnvelope] = []
    for i in range(10):
        rid = str(uuid.uuid4())
        first, second = posted(rid, 1), posted(rid, 2)
        envelopes += [first, second]
        # The state change and its events in one atomic update of one document.
        await reviews.update_one(
            {"_id": rid},
            {"$set": {"rating": i % 5 + 1}, "$push": doc_outbox.pending_push(first, second)},
            upsert=True,
        )
    relay = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
    task = asyncio.create_task(relay.run())
    try:
        got = await read_all(js, 20)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert sorted(g.id for g in got) == sorted(e.id for e in envelopes)
    for rid in {e.aggregate_id for e in envelopes}:  # per aggregate, in order
        assert [g.aggregate_version for g in got if g.aggregate_id == rid] == [1, 2]
    assert await reviews.count_documents({"pending_events.0": {"$exists": True}}) == 0


async def test_a_relay_that_died_after_publishing_republishes_and_jetstream_drops_the_repeat(
    db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext
) -> None:
    reviews = db["reviews"]
    rid = str(uuid.uuid4())
    e = posted(rid, 1)
    await reviews.insert_one({"_id": rid, "pending_events": [doc_outbox.pending_entry(e)]})
    await jetstream.publish(js, e)  # published, but the relay "died" before clearing it

    relay = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
    assert await relay.publish_pending() == 1
    got = await read_all(js, 1)
    assert [g.id for g in got] == [e.id]  # once in the stream
    assert (await reviews.find_one({"_id": rid}) or {}).get("pending_events") == []


async def test_only_one_relay_leads(db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext) -> None:
    a = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
    b = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
    assert await a._hold_lease()
    assert not await b._hold_lease()
    assert await a._hold_lease()  # renewal


# ------------------------------------------------------------------ marks: O(pending), not O(collection)


class Finds(monitoring.CommandListener):
    """The filters of the `find` commands a client sends to one collection."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.filters: list[Mapping[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == self.collection:
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def write_review(reviews: AsyncCollection[Mapping[str, Any]], *envelopes: EventEnvelope) -> str:
    """As the review service writes: the mark first, then the document with its events."""
    rid = envelopes[0].aggregate_id
    entries = [doc_outbox.pending_entry(e) for e in envelopes]
    await doc_outbox.mark(reviews, rid, doc_outbox.event_ids(entries))
    await reviews.insert_one({"_id": rid, "rating": 4, "pending_events": entries})
    return rid


async def test_after_its_start_up_scan_the_relay_reads_documents_only_by_id(
    mongo_server: Server, js: JetStreamContext
) -> None:
    """The collection is scanned once; afterwards the relay finds work through the marks and
    reads each marked document by `_id` (FerretDB's SQLite backend pushes only that down)."""
    finds = Finds("reviews")
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url, event_listeners=[finds])
    name = f"{mongo_server.extra['db_prefix']}docmarks_{uuid.uuid4().hex[:8]}"
    db = client[name]
    reviews = db["reviews"]
    try:
        await reviews.insert_many([{"_id": f"settled-{i}", "rating": 3, "pending_events": []} for i in range(50)])
        relay = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
        task = asyncio.create_task(relay.run())
        try:
            written = []
            for _ in range(5):
                rid = str(uuid.uuid4())
                written.append(posted(rid, 1))
                await write_review(reviews, written[-1])
                relay.wake()  # as the use case does after its write
            got = await read_all(js, len(written))
            await eventually(lambda: _no_marks(db))
        finally:
            relay.stop()
            await asyncio.wait_for(task, 10)
        assert sorted(g.id for g in got) == sorted(e.id for e in written)
        assert finds.filters[0] == {"pending_events.id": {"$exists": True}}  # the start-up scan
        assert all(set(f) == {"_id"} for f in finds.filters[1:]), finds.filters
        assert len(finds.filters) > 1
    finally:
        await client.drop_database(name)
        await client.close()


async def _no_marks(db: AsyncDatabase[Mapping[str, Any]]) -> bool:
    return await db[doc_outbox.MARKS].count_documents({}) == 0


async def test_the_safety_poll_publishes_what_another_process_wrote(
    db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext
) -> None:
    """Nobody wakes this relay for a write of another process (a replica, or one that died before
    publishing): its periodic look at the marks finds it."""
    settings = doc_outbox.DocRelaySettings(service="review", poll_interval_s=0.3)
    relay = doc_outbox.DocumentOutboxRelay(db, "reviews", js, settings)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)  # past its start-up scan: only the poll can find the write
        e = posted(str(uuid.uuid4()), 1)
        await write_review(db["reviews"], e)
        got = await read_all(js, 1)
        await eventually(lambda: _no_marks(db))
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert [g.id for g in got] == [e.id]
    assert (await db["reviews"].find_one({"_id": e.aggregate_id}) or {}).get("pending_events") == []


async def test_a_mark_stays_until_its_events_are_out_or_it_is_stale(
    db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext
) -> None:
    """A mark whose events are not in the document yet may belong to a write in flight: it stays
    (dropping it could strand those events); after `stale_mark_s` it goes (its write failed)."""
    reviews = db["reviews"]
    await doc_outbox.mark(reviews, "in-flight", ["e-1"])
    patient = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
    assert await patient.publish_marked() == 0
    assert await db[doc_outbox.MARKS].count_documents({"d": "in-flight"}) == 1
    stale = doc_outbox.DocRelaySettings(service="review", stale_mark_s=0.0)
    assert await doc_outbox.DocumentOutboxRelay(db, "reviews", js, stale).publish_marked() == 0
    assert await db[doc_outbox.MARKS].count_documents({"d": "in-flight"}) == 0


async def test_what_the_start_up_scan_cannot_publish_is_marked_and_published_later(
    db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext, nats_server: Server
) -> None:
    """NATS unreachable at start-up: the events stay in their documents and get marks, so the
    retries read the marks, not the collection; once NATS answers they go out in order."""
    reviews = db["reviews"]
    rid = str(uuid.uuid4())
    first, second = posted(rid, 1), posted(rid, 2)
    await reviews.insert_one({"_id": rid, "pending_events": [doc_outbox.pending_entry(e) for e in (first, second)]})
    closed = NATS()
    await closed.connect(nats_server.url)
    await closed.close()  # every publish on it fails
    down = doc_outbox.DocumentOutboxRelay(
        db, "reviews", closed.jetstream(), doc_outbox.DocRelaySettings(service="review", publish_timeout_s=1)
    )
    assert await down.publish_pending() == 0
    marks = [m async for m in db[doc_outbox.MARKS].find({"d": rid})]
    assert [m["e"] for m in marks] == [[first.id, second.id]]

    up = doc_outbox.DocumentOutboxRelay(db, "reviews", js, doc_outbox.DocRelaySettings(service="review"))
    assert await up.publish_marked() == 2
    got = await read_all(js, 2)
    assert [g.aggregate_version for g in got if g.aggregate_id == rid] == [1, 2]
    assert await _no_marks(db)
