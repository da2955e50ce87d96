"""Fixtures of the movie integration tests: the real movie service in-process (the composition
root and the kit's ServiceHost, real gRPC on a free port) on FerretDB and NATS, a database of
its own per test module, tokens for a manager and a customer."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from services.kit.events import jetstream
from services.kit.server import ServiceHost
from services.kit.testing_tokens import LocalTokenIssuer
from services.movie.bootstrap import MovieApp
from services.movie.entrypoints.review_consumer import DURABLE
from services.movie.settings import MovieSettings
from tests.support.servers import Server

Metadata = tuple[tuple[str, str]]


@pytest.fixture(scope="module")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="module")
def jwks_path(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issuer.write_jwks(tmp_path_factory.mktemp("movie-jwks") / "jwks.json")


@pytest.fixture(scope="module")
def manager(issuer: LocalTokenIssuer) -> Metadata:
    return issuer.metadata(issuer.mint("manager-1", roles={"manager"}, ttl_s=3600))


@pytest.fixture(scope="module")
def customer(issuer: LocalTokenIssuer) -> Metadata:
    return issuer.metadata(issuer.mint("customer-1", roles={"customer"}, ttl_s=3600))


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    # This module's service starts its review consumer afresh, not where an earlier module's stopped.
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer("CINEMA_REVIEW", DURABLE)
    yield js
    await nc.close()


@pytest.fixture(scope="module")
async def database_name(mongo_server: Server) -> AsyncIterator[str]:
    name = f"{mongo_server.extra['db_prefix']}movie_{uuid.uuid4().hex[:8]}"
    yield name
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(mongo_server.url)
    await client.drop_database(name)
    await client.close()


def movie_settings(mongo_url: str, database: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path) -> MovieSettings:
    return MovieSettings(
        mongo_url=mongo_url,
        mongo_database=database,
        nats_url=nats_url,
        grpc_port=0,
        metrics_enabled=False,
        jwks_source=str(jwks),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        drain_s=0,
        shutdown_grace_s=0.5,
        relay_poll_s=0.2,
        sweep_interval_s=1.0,
    )


@pytest.fixture(scope="module")
async def movie_service(
    mongo_server: Server,
    nats_server: Server,
    js: JetStreamContext,
    database_name: str,
    issuer: LocalTokenIssuer,
    jwks_path: Path,
) -> AsyncIterator[tuple[MovieApp, ServiceHost]]:
    app = MovieApp(movie_settings(mongo_server.url, database_name, nats_server.url, issuer, jwks_path))
    async with app.host() as host:
        await app.wait_events_ready()
        yield app, host


@pytest.fixture(scope="module")
def app(movie_service: tuple[MovieApp, ServiceHost]) -> MovieApp:
    return movie_service[0]


@pytest.fixture(scope="module")
def db(app: MovieApp) -> AsyncDatabase[Mapping[str, Any]]:
    return app.db


@pytest.fixture(scope="module")
async def stub(
    movie_service: tuple[MovieApp, ServiceHost], manager: Metadata
) -> AsyncIterator[movie_pb2_grpc.MovieServiceAsyncStub]:
    async with grpc.aio.insecure_channel(movie_service[1].address) as channel:
        stub = movie_pb2_grpc.MovieServiceStub(channel)
        # One authenticated call first: the kit's JwksCache answers UNAVAILABLE to requests that
        # arrive while its very first key load is in flight.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.DeleteMovie(movie_pb2.DeleteMovieRequest(movie_id=str(uuid.uuid4())), metadata=manager)
        yield stub
