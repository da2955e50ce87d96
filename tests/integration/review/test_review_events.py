"""ReviewPosted and ReviewDeleted reach JetStream from the document outbox: the right subjects,
envelope subject = aggregate id = review id, versions 1 then 2, in order per review, once; the
tombstone's pending events are cleared after publishing; a relay that died after publishing
(before clearing) publishes again and JetStream drops the repeat."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from cinema.review.v1 import events_pb2, review_pb2_grpc
from cinema.review.v1 import review_pb2 as pb
from services.kit.events import doc_outbox, jetstream
from services.kit.events import envelope as env
from services.review.adapters.catalog import MongoMovieCatalog
from services.review.adapters.clock import MillisecondClock
from services.review.adapters.mongo import COLLECTION, MongoReviewRepository, ensure_indexes
from services.review.bootstrap import ReviewApp
from services.review.service_layer import reviews
from services.review.service_layer.reviews import Author, DeleteReview, PostReview, ReviewDependencies
from tests.integration.review.helpers import Tokens, create_request, open_movie, review_events
from tests.support.polling import eventually
from tests.support.servers import Server

if TYPE_CHECKING:
    Stub = review_pb2_grpc.ReviewServiceAsyncStub
else:
    Stub = Any

pytestmark = pytest.mark.integration


async def test_posted_then_deleted_reach_jetstream_in_order_once(
    stub: Stub, tokens: Tokens, js: JetStreamContext, app: ReviewApp
) -> None:
    movie_id = await open_movie(app)
    review = (await stub.CreateReview(create_request(movie_id, 4, "Good."), metadata=tokens.customer("liz"))).review
    await stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=tokens.manager("boss"))

    got = await review_events(js, {review.id}, expected=2)
    assert [subject for subject, _, _ in got] == ["cinema.review.posted", "cinema.review.deleted"]
    assert [e.aggregate_version for _, e, _ in got] == [1, 2]
    assert all(e.subject == e.aggregate_id == review.id for _, e, _ in got)
    assert all(e.source == "//cinema/review" for _, e, _ in got)
    (_, _, posted), (_, _, deleted) = got
    assert posted == events_pb2.ReviewPosted(
        review_id=review.id, movie_id=movie_id, customer_id="liz", rating=4, text="Good."
    )
    assert deleted == events_pb2.ReviewDeleted(review_id=review.id, movie_id=movie_id, customer_id="liz", rating=4)

    async def cleared() -> bool:
        tombstone = await app.db[COLLECTION].find_one({"_id": f"{review.id}:deleted"})
        return tombstone is not None and tombstone["pending_events"] == [] and tombstone["state"] == "deleted"

    await eventually(cleared)
    assert await app.db[COLLECTION].find_one({"_id": review.id}) is None  # the standing review is gone


async def test_concurrent_deletes_of_one_review_delete_it_once(
    stub: Stub, tokens: Tokens, js: JetStreamContext, app: ReviewApp
) -> None:
    movie_id = await open_movie(app)
    review = (await stub.CreateReview(create_request(movie_id, 3), metadata=tokens.customer("nia"))).review
    callers = [tokens.customer("nia"), tokens.manager("m1")] * 5
    results = await asyncio.gather(
        *(stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=m) for m in callers),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(results) - len(refused) == 1, results
    assert all(e.code() == grpc.StatusCode.NOT_FOUND for e in refused)
    got = await review_events(js, {review.id}, expected=2)
    assert [s for s, _, _ in got] == ["cinema.review.posted", "cinema.review.deleted"]


async def test_many_reviews_each_in_order_and_once(
    stub: Stub, tokens: Tokens, js: JetStreamContext, app: ReviewApp
) -> None:
    movie_id = await open_movie(app)
    posted = await asyncio.gather(
        *(
            stub.CreateReview(create_request(movie_id, i % 5 + 1), metadata=tokens.customer(f"many-{i}"))
            for i in range(20)
        )
    )
    ids = [reply.review.id for reply in posted]
    await asyncio.gather(
        *(
            stub.DeleteReview(pb.DeleteReviewRequest(review_id=rid), metadata=tokens.customer(f"many-{i}"))
            for i, rid in enumerate(ids)
            if i % 2 == 0
        )
    )
    got = await review_events(js, set(ids), expected=30)
    assert len(got) == 30
    assert len({e.id for _, e, _ in got}) == 30  # no event twice
    for i, rid in enumerate(ids):
        mine = [(subject, e.aggregate_version) for subject, e, _ in got if e.aggregate_id == rid]
        expected = [("cinema.review.posted", 1)] + ([("cinema.review.deleted", 2)] if i % 2 == 0 else [])
        assert mine == expected


@pytest.fixture
async def quiet_db(mongo_server: Server) -> AsyncIterator[AsyncDatabase[Mapping[str, Any]]]:
    """A review database no running relay watches."""
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    name = f"{mongo_server.extra['db_prefix']}review_quiet_{uuid.uuid4().hex[:8]}"
    db = client[name]
    await ensure_indexes(db)
    yield db
    await client.drop_database(name)
    await client.close()


class NoRelay:
    def wake(self) -> None:
        pass


async def test_a_relay_killed_after_publishing_republishes_and_jetstream_drops_the_repeat(
    quiet_db: AsyncDatabase[Mapping[str, Any]], js: JetStreamContext
) -> None:
    catalog = MongoMovieCatalog(quiet_db)
    deps = ReviewDependencies(
        reviews=MongoReviewRepository(quiet_db), clock=MillisecondClock(), outbox=NoRelay(), catalog=catalog
    )
    movie_id = str(uuid.uuid4())
    await catalog.record_registered(movie_id)
    review = await reviews.post_review(PostReview(Author("mia"), movie_id, 5, "Loved it"), deps)
    await reviews.delete_review(DeleteReview(Author("mia"), review.id), deps)
    # The tombstone carries both: the post was still pending when the review was deleted.
    assert await quiet_db[COLLECTION].find_one({"_id": review.id}) is None
    doc = await quiet_db[COLLECTION].find_one({"_id": f"{review.id}:deleted"})
    assert doc is not None
    pending = [env.decode(entry["envelope"]) for entry in doc["pending_events"]]
    assert [e.aggregate_version for e in pending] == [1, 2]

    # The relay published both events, then died before clearing them from the document.
    for envelope in pending:
        assert not (await jetstream.publish(js, envelope)).duplicate

    relay = doc_outbox.DocumentOutboxRelay(quiet_db, COLLECTION, js, doc_outbox.DocRelaySettings(service="review"))
    assert await relay.publish_pending() == 2  # a new relay publishes them again ...
    got = await review_events(js, {review.id}, expected=2)
    assert [e.id for _, e, _ in got] == [e.id for e in pending]  # ... and the stream keeps each once
    assert (await quiet_db[COLLECTION].find_one({"_id": f"{review.id}:deleted"}) or {}).get("pending_events") == []
