"""Review's replica of the movie catalog, fed by the real movie events over NATS JetStream: a
review is accepted only for a movie registered and not deleted; NOT_FOUND otherwise, with
nothing written and nothing announced (so no customer can make the movie service park an event)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from google.rpc.error_details_pb2 import ResourceInfo  # type: ignore[import-untyped]
from nats.js.client import JetStreamContext

from cinema.movie.v1 import events_pb2 as movie_events
from cinema.review.v1 import review_pb2 as pb
from cinema.review.v1 import review_pb2_grpc
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.grpc_errors import error_details
from services.review.adapters.mongo import COLLECTION
from services.review.bootstrap import ReviewApp
from tests.integration.review.helpers import Tokens, create_request
from tests.support.polling import eventually

if TYPE_CHECKING:
    Stub = review_pb2_grpc.ReviewServiceAsyncStub
else:
    Stub = Any

pytestmark = pytest.mark.integration


async def publish_movie_event(
    js: JetStreamContext, event: movie_events.MovieRegistered | movie_events.MovieDeleted
) -> None:
    version = 1 if isinstance(event, movie_events.MovieRegistered) else 2
    wrapped = env.wrap(
        event, source="//cinema/movie", subject=event.movie_id, aggregate_id=event.movie_id, aggregate_version=version
    )
    await jetstream.publish(js, wrapped)


async def refused(stub: Stub, tokens: Tokens, movie_id: str, customer: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateReview(create_request(movie_id, 4, "Hm."), metadata=tokens.customer(customer))
    return caught.value


async def test_a_movie_is_reviewable_from_its_registration_until_its_deletion(
    stub: Stub, tokens: Tokens, js: JetStreamContext, app: ReviewApp
) -> None:
    movie_id = str(uuid.uuid4())
    before = await refused(stub, tokens, movie_id, "early")
    assert before.code() == grpc.StatusCode.NOT_FOUND
    assert "movie" in (before.details() or "") and movie_id in (before.details() or "")
    (info,) = error_details(before)
    assert isinstance(info, ResourceInfo) and (info.resource_type, info.resource_name) == ("movie", movie_id)

    await publish_movie_event(
        js, movie_events.MovieRegistered(movie_id=movie_id, title="Arrival", duration_minutes=116)
    )

    async def accepted() -> str | None:
        try:
            reply = await stub.CreateReview(create_request(movie_id, 5, "Yes."), metadata=tokens.customer("fan"))
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, err
            return None
        return reply.review.id

    review_id = await eventually(accepted, within_s=15)

    await publish_movie_event(js, movie_events.MovieDeleted(movie_id=movie_id, title="Arrival"))

    async def closed() -> bool:
        try:
            await stub.CreateReview(
                create_request(movie_id, 3, "Late."), metadata=tokens.customer(f"late-{uuid.uuid4().hex[:6]}")
            )
        except grpc.aio.AioRpcError as err:
            return err.code() == grpc.StatusCode.NOT_FOUND
        return False  # the deletion has not reached the replica yet

    assert await eventually(closed, within_s=15)
    # the reviews it had stay readable; a repeated registration does not reopen it
    assert (await stub.GetReview(pb.GetReviewRequest(review_id=review_id))).review.id == review_id
    await publish_movie_event(
        js, movie_events.MovieRegistered(movie_id=movie_id, title="Arrival", duration_minutes=116)
    )
    assert not await app.deps.catalog.accepts_reviews(movie_id)


async def test_a_review_of_an_unknown_movie_writes_and_announces_nothing(
    stub: Stub, tokens: Tokens, app: ReviewApp
) -> None:
    movie_id = str(uuid.uuid4())
    for customer in ("a", "b", "c"):
        assert (await refused(stub, tokens, movie_id, f"nobody-{customer}")).code() == grpc.StatusCode.NOT_FOUND
    assert await app.db[COLLECTION].count_documents({"movie_id": movie_id}) == 0
