"""The review service as its own process (`python -m services.review`), configured only by
REVIEW_* variables: `migrate` creates the indexes; killed with -9 between the write and the
publish (NATS unreachable, so every event is still pending in its document), it publishes all of
them, in order and once, after a restart; SIGTERM stops it with exit code 0."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from nats.js.client import JetStreamContext
from pymongo import AsyncMongoClient

from cinema.review.v1 import review_pb2 as pb
from cinema.review.v1 import review_pb2_grpc
from scripts.stack.process import free_port
from services.kit.testing_tokens import LocalTokenIssuer
from services.review.adapters.catalog import MongoMovieCatalog
from services.review.adapters.mongo import COLLECTION
from tests.integration.reservation.processes import ServiceProcess
from tests.integration.review.helpers import Tokens, create_request, review_events
from tests.support.servers import Server

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_db(mongo_server: Server) -> AsyncIterator[tuple[AsyncMongoClient[Mapping[str, Any]], str]]:
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    name = f"{mongo_server.extra['db_prefix']}review_proc_{uuid.uuid4().hex[:8]}"
    yield client, name
    await client.drop_database(name)
    await client.close()


def review_env(mongo_url: str, database: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path) -> dict[str, str]:
    return {
        "REVIEW_MONGO_URL": mongo_url,
        "REVIEW_MONGO_DATABASE": database,
        "REVIEW_NATS_URL": nats_url,
        "REVIEW_GRPC_PORT": str(free_port()),
        "REVIEW_METRICS_PORT": "0",
        "REVIEW_JWKS_SOURCE": str(jwks),
        "REVIEW_JWT_ISSUER": issuer.issuer,
        "REVIEW_JWT_AUDIENCE": issuer.audience,
        "REVIEW_RELAY_POLL_INTERVAL_S": "0.2",
        "REVIEW_DRAIN_S": "0.2",
        "REVIEW_SHUTDOWN_GRACE_S": "2",
    }


async def test_migrate_creates_the_indexes(
    mongo_server: Server, nats_server: Server, fresh_db: tuple[AsyncMongoClient[Mapping[str, Any]], str], tmp_path: Path
) -> None:
    client, name = fresh_db
    issuer = LocalTokenIssuer()
    env = review_env(mongo_server.url, name, nats_server.url, issuer, issuer.write_jwks(tmp_path / "jwks.json"))
    for _ in range(2):  # idempotent
        assert await ServiceProcess.run("review", env, ("migrate",)) == 0
    names = set(await client[name][COLLECTION].index_information())
    assert names == {"_id_", "author_key_unique", "movie_newest_first", "pending_events_id"}


async def test_killed_between_write_and_publish_the_events_still_arrive_after_restart(
    mongo_server: Server,
    nats_server: Server,
    js: JetStreamContext,
    fresh_db: tuple[AsyncMongoClient[Mapping[str, Any]], str],
    tmp_path: Path,
) -> None:
    client, name = fresh_db
    issuer = LocalTokenIssuer()
    tokens = Tokens(issuer)
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nobody listens: the relay cannot publish
    env = review_env(mongo_server.url, name, nowhere, issuer, jwks)
    movie_id = str(uuid.uuid4())
    # NATS is unreachable, so no movie event can reach review's replica of the catalog: the
    # movie is written there by the replica's own adapter
    await MongoMovieCatalog(client[name]).record_registered(movie_id)

    first = await ServiceProcess.start("review", env)
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            stub = review_pb2_grpc.ReviewServiceStub(channel)
            ids = []
            for i in range(3):
                reply = await stub.CreateReview(create_request(movie_id, i + 2), metadata=tokens.customer(f"k{i}"))
                ids.append(reply.review.id)
            await stub.DeleteReview(pb.DeleteReviewRequest(review_id=ids[0]), metadata=tokens.customer("k0"))
        # Written, not published: every event waits in its review's document.
        pending = [doc async for doc in client[name][COLLECTION].find({}, {"pending_events": 1})]
        assert sorted(len(doc["pending_events"]) for doc in pending) == [1, 1, 2]
        first.kill()  # kill -9
    finally:
        await first.close()

    again = await ServiceProcess.start("review", env | {"REVIEW_NATS_URL": nats_server.url})
    try:
        got = await review_events(js, set(ids), expected=4)
        assert len(got) == 4 and len({e.id for _, e, _ in got}) == 4
        assert [(s, e.aggregate_version) for s, e, _ in got if e.aggregate_id == ids[0]] == [
            ("cinema.review.posted", 1),
            ("cinema.review.deleted", 2),
        ]
        assert sorted(e.aggregate_id for s, e, _ in got if s == "cinema.review.posted") == sorted(ids)
        assert await client[name][COLLECTION].count_documents({"pending_events.0": {"$exists": True}}) == 0
        assert await again.terminate() == 0  # SIGTERM: graceful, exit 0
        assert "review resources closed" in again.messages()
    finally:
        await again.close()
