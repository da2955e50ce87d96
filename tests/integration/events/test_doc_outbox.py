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
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1.events_pb2 import ReviewPosted
from services.kit.events import doc_outbox, jetstream
from services.kit.events import envelope as env
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
