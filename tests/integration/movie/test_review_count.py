"""The review count and rating kept from review events, keyed by review id: counted once,
uncounted once, redelivery and delete-before-post change nothing; unknown movies are refused."""

from __future__ import annotations

import uuid

import pytest
from nats.js.client import JetStreamContext

from cinema.movie.v1 import movie_pb2 as pb
from cinema.movie.v1 import movie_pb2_grpc
from services.movie.bootstrap import MovieApp
from services.movie.domain.reviews import Outcome
from services.movie.service_layer import reviews
from tests.integration.movie.helpers import Metadata, create_movie, publish_all, review_deleted, review_posted
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


async def counts(stub: movie_pb2_grpc.MovieServiceAsyncStub, movie_id: str) -> tuple[int, float]:
    movie = (await stub.GetMovie(pb.GetMovieRequest(movie_id=movie_id))).movie
    return movie.review_count, movie.average_rating


async def test_three_posted_one_deleted_then_redelivered(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, js: JetStreamContext, app: MovieApp
) -> None:
    movie = await create_movie(stub, manager, title="Reviewed")
    assert await counts(stub, movie.id) == (0, 0.0)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    posted = [review_posted(rid, movie.id, rating) for rid, rating in zip(ids, (5, 3, 4), strict=True)]
    await publish_all(js, posted)

    async def three() -> bool:
        return await counts(stub, movie.id) == (3, 4.0)

    await eventually(three)
    deleted = review_deleted(ids[1], movie.id, 3)
    await publish_all(js, [deleted])

    async def two() -> bool:
        return await counts(stub, movie.id) == (2, 4.5)

    await eventually(two)

    # The same events again, as a redelivery brings them (fresh message ids, so JetStream keeps them),
    # then a marker after them: once the marker is counted, the redelivered ones were handled.
    again = [review_posted(rid, movie.id, r, event_id=str(uuid.uuid4())) for rid, r in zip(ids, (5, 3, 4), strict=True)]
    await publish_all(js, [*again, review_deleted(ids[1], movie.id, 3, event_id=str(uuid.uuid4()))])
    await publish_all(js, posted)  # and the very same envelopes: JetStream drops them by Nats-Msg-Id
    marker = str(uuid.uuid4())
    await publish_all(js, [review_posted(marker, movie.id, 1), review_deleted(marker, movie.id, 1)])
    doc_key = f"reviews.{marker}.s"

    async def marker_handled() -> bool:
        doc = await app.db["movies"].find_one({"_id": movie.id, doc_key: "deleted"}, {"_id": 1})
        return doc is not None

    await eventually(marker_handled)
    assert await counts(stub, movie.id) == (2, 4.5)


async def test_delete_before_post_is_never_counted(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, app: MovieApp
) -> None:
    movie = await create_movie(stub, manager, title="Out of order")
    rid = str(uuid.uuid4())
    deps = app.deps
    assert await reviews.on_review_deleted(movie.id, rid, deps) is Outcome.TOMBSTONED
    assert await reviews.on_review_posted(movie.id, rid, 5, deps) is Outcome.UNCHANGED
    assert await reviews.on_review_deleted(movie.id, rid, deps) is Outcome.UNCHANGED
    other = str(uuid.uuid4())
    assert await reviews.on_review_posted(movie.id, other, 2, deps) is Outcome.COUNTED
    assert await reviews.on_review_deleted(movie.id, other, deps) is Outcome.UNCOUNTED
    assert await reviews.on_review_deleted(movie.id, other, deps) is Outcome.UNCHANGED
    assert await counts(stub, movie.id) == (0, 0.0)


async def test_a_review_of_an_unknown_movie_is_refused(app: MovieApp) -> None:
    with pytest.raises(reviews.MovieNotKnown):
        await reviews.on_review_posted(str(uuid.uuid4()), str(uuid.uuid4()), 4, app.deps)
    with pytest.raises(reviews.BadReviewEvent):
        await reviews.on_review_posted(str(uuid.uuid4()), "a.b", 4, app.deps)


async def test_reviews_of_a_deleted_movie_still_count(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, app: MovieApp
) -> None:
    movie = await create_movie(stub, manager, title="Gone")
    await stub.DeleteMovie(pb.DeleteMovieRequest(movie_id=movie.id), metadata=manager)
    assert await reviews.on_review_posted(movie.id, str(uuid.uuid4()), 4, app.deps) is Outcome.COUNTED
