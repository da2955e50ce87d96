"""The movie service as its own process, configured only by MOVIE_* variables: the migrate
command, graceful SIGTERM, review counts catching up after the service was down, and no event
lost when the process is killed (-9) between its writes and their publication."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from nats.js.client import JetStreamContext
from pymongo import AsyncMongoClient

from cinema.movie.v1 import movie_pb2 as pb
from cinema.movie.v1 import movie_pb2_grpc
from scripts.stack.process import free_port
from services.kit.testing_tokens import LocalTokenIssuer
from services.movie.adapters import mongo
from tests.integration.movie.helpers import (
    BASE,
    catalog_events,
    new_hall,
    publish_all,
    review_deleted,
    review_posted,
    screening_request,
)
from tests.integration.reservation.processes import ServiceProcess
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = pytest.mark.integration

Document = Mapping[str, Any]


@pytest.fixture
async def database(mongo_server: Server) -> AsyncIterator[str]:
    name = f"{mongo_server.extra['db_prefix']}movieproc_{uuid.uuid4().hex[:8]}"
    yield name
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_server.url)
    await client.drop_database(name)
    await client.close()


def movie_env(
    mongo_url: str, database: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path, port: int = 0
) -> dict[str, str]:
    return {
        "MOVIE_MONGO_URL": mongo_url,
        "MOVIE_MONGO_DATABASE": database,
        "MOVIE_NATS_URL": nats_url,
        "MOVIE_GRPC_PORT": str(port),
        "MOVIE_METRICS_PORT": "0",
        "MOVIE_JWKS_SOURCE": str(jwks),
        "MOVIE_JWT_ISSUER": issuer.issuer,
        "MOVIE_JWT_AUDIENCE": issuer.audience,
        "MOVIE_DRAIN_S": "0.2",
        "MOVIE_SHUTDOWN_GRACE_S": "2",
        "MOVIE_RELAY_POLL_S": "0.2",
    }


async def first_call(stub: movie_pb2_grpc.MovieServiceAsyncStub, request: pb.CreateMovieRequest, md: Any) -> pb.Movie:
    """CreateMovie, retried while the fresh process loads its JWKS (UNAVAILABLE until then)."""

    async def attempt() -> pb.Movie | None:
        try:
            return (await stub.CreateMovie(request, metadata=md)).movie
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return None

    return await eventually(attempt, within_s=10)


async def test_migrate_and_sigterm(mongo_server: Server, nats_server: Server, database: str, tmp_path: Path) -> None:
    issuer = LocalTokenIssuer()
    env = movie_env(mongo_server.url, database, nats_server.url, issuer, issuer.write_jwks(tmp_path / "jwks.json"))
    assert await ServiceProcess.run("movie", env, ("migrate",)) == 0
    assert await ServiceProcess.run("movie", env, ("migrate",)) == 0  # idempotent
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_server.url)
    try:
        names = set(await client[database][mongo.MOVIES].index_information())
        assert {"live_by_title", "genre_by_title", "screenings_to_cancel", "pending_events_id"} <= names
    finally:
        await client.close()
    process = await ServiceProcess.start("movie", env)
    try:
        assert await process.terminate() == 0
        assert "service stopped" in process.messages()
    finally:
        await process.close()


async def test_reviews_posted_while_the_service_is_down_are_counted_exactly_once(
    mongo_server: Server, nats_server: Server, js: JetStreamContext, database: str, tmp_path: Path
) -> None:
    issuer = LocalTokenIssuer()
    manager = issuer.metadata(issuer.mint("manager-1", roles={"manager"}))
    env = movie_env(mongo_server.url, database, nats_server.url, issuer, issuer.write_jwks(tmp_path / "jwks.json"))
    process = await ServiceProcess.start("movie", env)
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = movie_pb2_grpc.MovieServiceStub(channel)
            movie = await first_call(
                stub, pb.CreateMovieRequest(movie=pb.Movie(title="Popular", duration_minutes=100)), manager
            )
        assert await process.terminate() == 0
    finally:
        await process.close()

    # While it is down: 100 reviews posted, 30 of them deleted (10 deletes overtaking their post).
    ids = [str(uuid.uuid4()) for _ in range(100)]
    ratings = {rid: i % 5 + 1 for i, rid in enumerate(ids)}
    overtaken, deleted_after = ids[:10], ids[10:30]
    await publish_all(js, [review_deleted(rid, movie.id, ratings[rid]) for rid in overtaken])
    await publish_all(js, [review_posted(rid, movie.id, ratings[rid]) for rid in ids])
    await publish_all(js, [review_deleted(rid, movie.id, ratings[rid]) for rid in deleted_after])

    process = await ServiceProcess.start("movie", env)
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = movie_pb2_grpc.MovieServiceStub(channel)

            async def count() -> pb.Movie | None:
                got = (await stub.GetMovie(pb.GetMovieRequest(movie_id=movie.id))).movie
                return got if got.review_count == 70 else None

            got = await eventually(count, within_s=30)
            remaining = ids[30:]
            assert got.average_rating == pytest.approx(sum(ratings[r] for r in remaining) / 70)
            # Still 70 once everything is surely handled: the last deletes leave their marks.
            client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_server.url)
            try:
                doc = await client[database][mongo.MOVIES].find_one({"_id": movie.id})
                assert doc is not None
                entries = doc["reviews"]
                assert len(entries) == 100
                assert sum(1 for e in entries.values() if e["s"] == "counted") == 70
            finally:
                await client.close()
            again = (await stub.GetMovie(pb.GetMovieRequest(movie_id=movie.id))).movie
            assert again.review_count == 70
        assert await process.terminate() == 0
    finally:
        await process.close()


async def test_nothing_is_lost_when_the_process_dies_between_write_and_publish(
    mongo_server: Server, nats_server: Server, js: JetStreamContext, database: str, tmp_path: Path
) -> None:
    issuer = LocalTokenIssuer()
    manager = issuer.metadata(issuer.mint("manager-1", roles={"manager"}))
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    # First life: NATS unreachable, so every write stays unpublished in its document.
    nowhere = f"nats://127.0.0.1:{free_port()}"
    process = await ServiceProcess.start("movie", movie_env(mongo_server.url, database, nowhere, issuer, jwks))
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = movie_pb2_grpc.MovieServiceStub(channel)
            movie = await first_call(
                stub, pb.CreateMovieRequest(movie=pb.Movie(title="Crash", duration_minutes=90)), manager
            )
            await stub.UpdateMovie(
                pb.UpdateMovieRequest(
                    movie=pb.Movie(id=movie.id, title="Crash (director's cut)"), update_mask=FieldMask(paths=["title"])
                ),
                metadata=manager,
            )
            hall = new_hall()
            screenings = [
                (
                    await stub.ScheduleScreening(
                        screening_request(movie.id, hall, BASE + timedelta(hours=3 * i)), metadata=manager
                    )
                ).screening
                for i in range(3)
            ]
            await stub.CancelScreening(pb.CancelScreeningRequest(screening_id=screenings[0].id), metadata=manager)
        client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_server.url)
        try:
            db = client[database]
            waiting = await db[mongo.MOVIES].count_documents({"pending_events.0": {"$exists": True}})
            waiting += await db[mongo.SCREENINGS].count_documents({"pending_events.0": {"$exists": True}})
            assert waiting == 4  # the movie and three screenings hold their unpublished events
        finally:
            await client.close()
        process.kill()  # kill -9
    finally:
        await process.close()

    # Second life, with NATS: the relay publishes everything the first life wrote.
    env = movie_env(mongo_server.url, database, nats_server.url, issuer, jwks)
    process = await ServiceProcess.start("movie", env)
    try:
        ids = {movie.id, *(s.id for s in screenings)}
        events = await catalog_events(js, ids, expected=2 + 3 + 1, within_s=30)
        versions: dict[str, list[int]] = {}
        for envelope, _ in events:
            versions.setdefault(envelope.aggregate_id, []).append(envelope.aggregate_version)
        assert versions[movie.id] == [1, 2]
        assert versions[screenings[0].id] == [1, 2]
        assert versions[screenings[1].id] == versions[screenings[2].id] == [1]
        assert await process.terminate() == 0
    finally:
        await process.close()
        with contextlib.suppress(Exception):
            process.kill()
