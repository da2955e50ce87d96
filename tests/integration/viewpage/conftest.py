"""Fixtures of the viewpage integration tests: real Redis and NATS, fresh streams, apps on demand.

Every test gets fresh streams (the board consumes *all* events of its contexts, so another
test's events must not leak in), its own key prefix in Redis, and a factory of `ViewpageApp`s
(replicas sharing the durable `viewpage` consumers) that are stopped at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from services.kit.events import jetstream
from services.kit.testing_tokens import LocalTokenIssuer
from services.viewpage.adapters.redis_store import RedisReadModel
from services.viewpage.bootstrap import ViewpageApp, model_shape
from services.viewpage.entrypoints.event_consumers import LagObserver
from services.viewpage.settings import ViewpageSettings
from tests.support.servers import Server

AppFactory = Callable[..., Awaitable[ViewpageApp]]


@pytest.fixture(scope="session")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="session")
def jwks_path(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issuer.write_jwks(tmp_path_factory.mktemp("viewpage-jwks") / "jwks.json")


@pytest.fixture
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    for config in jetstream.stream_configs():
        with contextlib.suppress(NotFoundError):  # absent is fine
            await js.delete_stream(config.name or "")
    await jetstream.ensure_streams(js)
    yield js
    await nc.close()


@pytest.fixture
def prefix() -> str:
    return f"vp{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(
    redis_server: Server, nats_server: Server, prefix: str, issuer: LocalTokenIssuer, jwks_path: Path
) -> ViewpageSettings:
    return ViewpageSettings(
        redis_url=redis_server.url,
        nats_url=nats_server.url,
        key_prefix=prefix,
        grpc_port=0,
        metrics_port=0,
        jwks_source=str(jwks_path),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        drain_s=0,
        shutdown_grace_s=1,
    )


@pytest.fixture
async def redis_client(redis_server: Server) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_client: aioredis.Redis, prefix: str, settings: ViewpageSettings) -> RedisReadModel:
    model = RedisReadModel(redis_client, prefix)
    await model.ensure_initialised(model_shape(settings))  # as the apps do: they see it current
    return model


@pytest.fixture
async def start_app(settings: ViewpageSettings, js: JetStreamContext) -> AsyncIterator[AppFactory]:
    """Start a replica (the event side only); all are stopped at the end of the test."""
    apps: list[ViewpageApp] = []

    async def start(on_applied: LagObserver | None = None) -> ViewpageApp:
        app = ViewpageApp(settings, on_applied=on_applied)
        apps.append(app)
        await app.start()
        return app

    yield start
    for app in apps:
        await app.stop()
