"""Fixtures of the review integration tests: the real review service, in-process through its
composition root and the kit's ServiceHost (real gRPC on a free port), on real FerretDB (a
fresh database for the module, dropped at the end) and NATS JetStream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from pymongo import AsyncMongoClient

from cinema.review.v1 import review_pb2, review_pb2_grpc
from services.kit.events import jetstream
from services.kit.server import ServiceHost
from services.kit.testing_tokens import LocalTokenIssuer
from services.review.adapters.mongo import COLLECTION
from services.review.bootstrap import ReviewApp
from tests.integration.review.helpers import QueryRecorder, Tokens, review_settings
from tests.support.servers import Server


@pytest.fixture(scope="module")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="module")
def tokens(issuer: LocalTokenIssuer) -> Tokens:
    return Tokens(issuer)


@pytest.fixture(scope="module")
def jwks_path(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issuer.write_jwks(tmp_path_factory.mktemp("review-jwks") / "jwks.json")


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    yield js
    await nc.close()


@pytest.fixture(scope="module")
def queries() -> QueryRecorder:
    return QueryRecorder(COLLECTION)


@pytest.fixture(scope="module")
async def mongo(mongo_server: Server, queries: QueryRecorder) -> AsyncIterator[AsyncMongoClient[Mapping[str, Any]]]:
    """The client the service uses, with every query it sends recorded."""
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(
        mongo_server.url, tz_aware=True, event_listeners=[queries]
    )
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def database(mongo_server: Server, mongo: AsyncMongoClient[Mapping[str, Any]]) -> AsyncIterator[str]:
    name = f"{mongo_server.extra['db_prefix']}review_{uuid.uuid4().hex[:8]}"
    yield name
    await mongo.drop_database(name)


@pytest.fixture(scope="module")
async def review(
    mongo_server: Server,
    nats_server: Server,
    js: JetStreamContext,
    mongo: AsyncMongoClient[Mapping[str, Any]],
    database: str,
    issuer: LocalTokenIssuer,
    jwks_path: Path,
) -> AsyncIterator[tuple[ReviewApp, ServiceHost]]:
    settings = review_settings(mongo_server.url, database, nats_server.url, issuer, jwks_path)
    app = ReviewApp(settings, client=mongo)
    async with app.host() as host:
        await app.wait_events_ready()
        yield app, host


@pytest.fixture(scope="module")
def app(review: tuple[ReviewApp, ServiceHost]) -> ReviewApp:
    return review[0]


@pytest.fixture(scope="module")
async def stub(
    review: tuple[ReviewApp, ServiceHost], tokens: Tokens
) -> AsyncIterator[review_pb2_grpc.ReviewServiceAsyncStub]:
    async with grpc.aio.insecure_channel(review[1].address) as channel:
        stub = review_pb2_grpc.ReviewServiceStub(channel)
        # One authenticated call first, so the JWKS is loaded before the tests race.
        await stub.ListReviews(
            review_pb2.ListReviewsRequest(movie_id=str(uuid.uuid4())), metadata=tokens.customer("warm-up")
        )
        yield stub


@pytest.fixture(scope="module")
async def open_movies(app: ReviewApp) -> list[str]:
    """Movies review's replica of the catalog knows, written by its own adapter as the movie
    events would (tests/integration/review/test_review_catalog.py proves the events do)."""
    ids = [str(uuid.uuid4()) for _ in range(64)]
    for movie_id in ids:
        await app.deps.catalog.record_registered(movie_id)
    return ids
