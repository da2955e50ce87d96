"""The review store on FerretDB: the indexes exist, and every query the service sends (recorded
from the wire by a command listener on its MongoDB client) is served by one of them; the unique
author key holds in the database itself; tombstones stay out of reads."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest
from nats.js.client import JetStreamContext
from pymongo.errors import DuplicateKeyError

from cinema.review.v1 import review_pb2 as pb
from cinema.review.v1 import review_pb2_grpc
from services.review.adapters.mongo import COLLECTION, to_document
from services.review.bootstrap import ReviewApp
from services.review.domain.review import Review
from tests.integration.review.helpers import (
    QueryRecorder,
    Tokens,
    create_request,
    filter_fields,
    open_movie,
    review_events,
)

if TYPE_CHECKING:
    Stub = review_pb2_grpc.ReviewServiceAsyncStub
else:
    Stub = Any

pytestmark = pytest.mark.integration

EXPECTED_INDEXES = {
    "_id_": [("_id", 1)],
    "author_key_unique": [("author_key", 1)],
    "movie_newest_first": [("movie_id", 1), ("state", 1), ("created_at", -1), ("_id", -1)],
    "pending_events_id": [("pending_events.id", 1)],
}
# The kit's relay looks for documents with pending events by `pending_events.id` (its index).
RELAY_FIELDS = {"pending_events.id"}


def keys_of(spec: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(field, int(direction)) for field, direction in spec["key"]]


async def test_the_indexes_exist(app: ReviewApp) -> None:
    info = await app.db[COLLECTION].index_information()
    assert {name: keys_of(spec) for name, spec in info.items()} == EXPECTED_INDEXES
    assert info["author_key_unique"].get("unique") is True


def served_by(fields: set[str], indexes: Mapping[str, list[tuple[str, int]]], unique: set[str]) -> str | None:
    """The index serving a query on `fields`: one holding every field it filters on, or a unique
    index all of whose fields it fixes (a point lookup; the other conditions are checked on the
    one document found)."""
    for name, keys in indexes.items():
        names = [field for field, _ in keys]
        if fields <= set(names) and names[0] in fields:
            return name
        if name in unique and set(names) <= fields:
            return name
    return None


async def test_every_query_the_service_makes_is_served_by_an_index(
    app: ReviewApp, stub: Stub, tokens: Tokens, queries: QueryRecorder, js: JetStreamContext
) -> None:
    # Every use case, every branch that reads: post, duplicate, idempotent retry, get, two
    # pages, delete by author and by a manager, another's refused delete; then the relay.
    movie_id, request_id = await open_movie(app), str(uuid.uuid4())
    first = (
        await stub.CreateReview(create_request(movie_id, 3, "", request_id), metadata=tokens.customer("q1"))
    ).review
    await stub.CreateReview(create_request(movie_id, 3, "", request_id), metadata=tokens.customer("q1"))
    with pytest.raises(Exception, match="already"):
        await stub.CreateReview(create_request(movie_id, 2), metadata=tokens.customer("q1"))
    second = (await stub.CreateReview(create_request(movie_id, 5), metadata=tokens.customer("q2"))).review
    await stub.GetReview(pb.GetReviewRequest(review_id=first.id))
    page = await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id, page_size=1))
    await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id, page_size=1, page_token=page.next_page_token))
    with pytest.raises(Exception, match="author"):
        await stub.DeleteReview(pb.DeleteReviewRequest(review_id=first.id), metadata=tokens.customer("q2"))
    await stub.DeleteReview(pb.DeleteReviewRequest(review_id=first.id), metadata=tokens.customer("q1"))
    await stub.DeleteReview(pb.DeleteReviewRequest(review_id=second.id), metadata=tokens.manager())
    await review_events(js, {first.id, second.id}, expected=4)

    info = await app.db[COLLECTION].index_information()
    indexes = {name: keys_of(spec) for name, spec in info.items()}
    unique = {name for name, spec in info.items() if spec.get("unique")} | {"_id_"}
    recorded = queries.snapshot()
    shapes = {(command, frozenset(filter_fields(query))) for command, query in recorded}
    assert {fields for _, fields in shapes} >= {
        frozenset({"_id"}),  # get (review and tombstone), a page's tombstone check
        frozenset({"author_key"}),  # find_by_author
        frozenset({"movie_id", "state"}),  # first page
        frozenset({"movie_id", "state", "created_at", "_id"}),  # later pages (keyset)
        frozenset({"_id", "state"}),  # removing a deleted review's standing document
    }
    own = [(command, set(fields)) for command, fields in shapes if not fields & RELAY_FIELDS]
    unserved = [(command, sorted(fields)) for command, fields in own if served_by(fields, indexes, unique) is None]
    assert unserved == [], f"queries without an index: {unserved}"

    # The kit's relay asks for `pending_events.id: {$exists: true}`, served by the kit's sparse
    # index on `pending_events.id`.
    relay = {fields for command, fields in shapes if fields & RELAY_FIELDS}
    assert relay == {frozenset(RELAY_FIELDS)}
    assert "pending_events_id" in indexes


async def test_the_author_key_is_unique_in_the_database_itself(app: ReviewApp) -> None:
    reviews = app.db[COLLECTION]
    key = f"{uuid.uuid4()}/someone"
    await reviews.insert_one({"_id": str(uuid.uuid4()), "author_key": key})
    with pytest.raises(DuplicateKeyError):
        await reviews.insert_one({"_id": str(uuid.uuid4()), "author_key": key})


async def test_a_deletion_cut_short_by_a_crash_is_healed_by_the_reads(
    app: ReviewApp, stub: Stub, tokens: Tokens
) -> None:
    """The process died after inserting the tombstone and before removing the standing review."""
    movie_id = await open_movie(app)
    posted = (await stub.CreateReview(create_request(movie_id, 2), metadata=tokens.customer("oz"))).review
    review = await app.deps.reviews.get(posted.id)
    assert isinstance(review, Review)
    review.delete(by="oz", is_manager=False, at=review.created_at)
    await app.db[COLLECTION].insert_one(to_document(review) | {"pending_events": []})
    assert await app.db[COLLECTION].count_documents({"_id": posted.id}) == 1  # the leftover

    assert list((await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))).reviews) == []
    with pytest.raises(Exception, match="not found"):
        await stub.GetReview(pb.GetReviewRequest(review_id=posted.id))
    assert await app.db[COLLECTION].count_documents({"_id": posted.id}) == 0  # removed by the read
    await stub.CreateReview(create_request(movie_id, 5), metadata=tokens.customer("oz"))  # the key is free


async def test_a_leftover_does_not_block_the_authors_next_review(app: ReviewApp, stub: Stub, tokens: Tokens) -> None:
    movie_id = await open_movie(app)
    posted = (await stub.CreateReview(create_request(movie_id, 2), metadata=tokens.customer("pat"))).review
    review = await app.deps.reviews.get(posted.id)
    assert isinstance(review, Review)
    review.delete(by="pat", is_manager=False, at=review.created_at)
    await app.db[COLLECTION].insert_one(to_document(review) | {"pending_events": []})
    again = (await stub.CreateReview(create_request(movie_id, 4), metadata=tokens.customer("pat"))).review
    assert again.id != posted.id
