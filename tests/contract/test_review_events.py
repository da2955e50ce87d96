"""Contract: the review events as the movie service's review consumer needs them.

Checked against events really published by the review service (in-process, real gRPC, FerretDB,
the document outbox relay, NATS JetStream) and received the way the movie service receives them:
a durable pull consumer of the kit (`EventConsumer`) on `cinema.review.posted` and
`cinema.review.deleted`, which unwraps the envelope and hands (envelope, event) to a handler.

What the consumer relies on (services/movie/entrypoints/review_consumer.py at the time of
writing): `review_id` (the key it counts by; a plain token `[A-Za-z0-9_-]{1,64}`, since it becomes
a key of a document map), `movie_id` and `rating` (1..5) on ReviewPosted; `review_id` and
`movie_id` on ReviewDeleted, which carries the rating as well so the average can be corrected
without a lookup (protos/cinema/review/v1/events.proto). The envelope's subject and aggregate id
are the review id (the correlation key), and its aggregate version orders one review's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from pymongo import AsyncMongoClient

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1 import events_pb2, review_pb2_grpc
from cinema.review.v1 import review_pb2 as pb
from services.kit.events import jetstream
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.kit.events.naming import parse_full_name
from services.kit.testing_tokens import LocalTokenIssuer
from services.review.bootstrap import ReviewApp
from tests.integration.review.helpers import Tokens, create_request, open_movie, review_settings
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = pytest.mark.integration

# What the movie service's consumer subscribes to and keys by.
SUBJECTS = ("cinema.review.posted", "cinema.review.deleted")
REVIEW_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    yield js
    await nc.close()


@pytest.fixture(scope="module")
async def review_address(
    mongo_server: Server, nats_server: Server, js: JetStreamContext, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, Tokens, ReviewApp]]:
    issuer = LocalTokenIssuer()
    jwks = issuer.write_jwks(tmp_path_factory.mktemp("review-contract") / "jwks.json")
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    database = f"{mongo_server.extra['db_prefix']}review_contract_{uuid.uuid4().hex[:8]}"
    app = ReviewApp(review_settings(mongo_server.url, database, nats_server.url, issuer, Path(jwks)), client=client)
    try:
        async with app.host() as host:
            await app.wait_events_ready()
            yield host.address, Tokens(issuer), app
    finally:
        await client.drop_database(database)
        await client.close()


class Received:
    """A handler like the movie service's: records what the kit hands it."""

    def __init__(self) -> None:
        self.events: list[tuple[EventEnvelope, Message]] = []

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        self.events.append((envelope, event))

    def about(self, review_ids: set[str]) -> list[tuple[EventEnvelope, Message]]:
        return [(e, m) for e, m in self.events if e.aggregate_id in review_ids]


def test_the_subjects_are_the_ones_the_movie_consumer_subscribes_to() -> None:
    names = (events_pb2.ReviewPosted.DESCRIPTOR.full_name, events_pb2.ReviewDeleted.DESCRIPTOR.full_name)
    assert tuple(parse_full_name(name).subject for name in names) == SUBJECTS
    assert {parse_full_name(name).stream for name in names} == {"CINEMA_REVIEW"}


async def test_published_review_events_carry_what_the_movie_consumer_needs(
    review_address: tuple[str, Tokens, ReviewApp], js: JetStreamContext
) -> None:
    address, tokens, app = review_address
    movie_id = await open_movie(app)  # a movie review's replica of the catalog knows
    async with grpc.aio.insecure_channel(address) as channel:
        stub = review_pb2_grpc.ReviewServiceStub(channel)
        kept = (await stub.CreateReview(create_request(movie_id, 5, "Yes"), metadata=tokens.customer("c1"))).review
        gone = (await stub.CreateReview(create_request(movie_id, 2, "No"), metadata=tokens.customer("c2"))).review
        await stub.DeleteReview(pb.DeleteReviewRequest(review_id=gone.id), metadata=tokens.customer("c2"))

    received = Received()
    durable = f"contract-movie-{uuid.uuid4().hex[:8]}"
    consumer = EventConsumer(js, ConsumerSettings(durable=durable, context="review", subjects=SUBJECTS), received)
    task = asyncio.create_task(consumer.run())
    try:

        async def all_three() -> bool:
            return len(received.about({kept.id, gone.id})) >= 3

        await eventually(all_three, within_s=15)
        await asyncio.sleep(0.5)  # a duplicate would show up now
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer("CINEMA_REVIEW", durable)

    got = received.about({kept.id, gone.id})
    assert len(got) == 3 and len({e.id for e, _ in got}) == 3
    for envelope, event in got:
        assert isinstance(event, events_pb2.ReviewPosted | events_pb2.ReviewDeleted)
        assert envelope.type == event.DESCRIPTOR.full_name
        assert envelope.subject == envelope.aggregate_id == event.review_id  # the correlation key
        assert REVIEW_KEY.match(event.review_id)
        assert event.movie_id == movie_id
        assert 1 <= event.rating <= 5
    posted = {event.review_id: event for _, event in got if isinstance(event, events_pb2.ReviewPosted)}
    deleted = [(envelope, event) for envelope, event in got if isinstance(event, events_pb2.ReviewDeleted)]
    assert {rid: e.rating for rid, e in posted.items()} == {kept.id: 5, gone.id: 2}
    assert [(e.review_id, e.rating) for _, e in deleted] == [(gone.id, 2)]  # the rating the post added
    versions = [
        (envelope.aggregate_version, type(event).__name__) for envelope, event in got if envelope.subject == gone.id
    ]
    assert versions == [(1, "ReviewPosted"), (2, "ReviewDeleted")]  # in order on the stream
