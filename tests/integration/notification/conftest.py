"""Fixtures of the notification integration tests: real PostgreSQL, NATS and SMTP sink processes.

Each test module gets fresh durable consumers (they start at new messages, so events of other
modules' tests in the shared streams are not replayed) and its own sink folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from scripts.stack.process import free_port
from services.kit.events import jetstream
from services.kit.testing_tokens import LocalTokenIssuer
from services.notification.bootstrap import NotificationApp
from services.notification.entrypoints.consumers import DURABLE
from services.notification.settings import NotificationSettings
from tests.integration.notification.helpers import DOMAIN, SmtpSink
from tests.support.polling import eventually
from tests.support.servers import Server

STREAMS = ("CINEMA_RESERVATION", "CINEMA_PAYMENT")


@contextlib.asynccontextmanager
async def fresh_streams(nats_url: str, durables: Iterable[tuple[str, str]]) -> AsyncIterator[JetStreamContext]:
    """The streams, with the given (stream, durable) consumers deleted so that they start afresh."""
    nc = NATS()
    await nc.connect(nats_url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    for stream, durable in durables:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, durable)
    try:
        yield js
    finally:
        await nc.close()


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    async with fresh_streams(nats_server.url, [(stream, DURABLE) for stream in STREAMS]) as js:
        yield js


@pytest.fixture(scope="session")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="session")
def jwks_path(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issuer.write_jwks(tmp_path_factory.mktemp("notification-jwks") / "jwks.json")


@pytest.fixture(scope="module")
async def sink(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SmtpSink]:
    root = tmp_path_factory.mktemp("smtp")
    sink = SmtpSink(free_port(), root / "mail", reject=r"@bounce\.invalid$")
    await sink.start()
    yield sink
    await sink.stop()


def settings_for(
    database_url: str, nats_url: str, smtp_port: int, issuer: LocalTokenIssuer, jwks: Path, **more: Any
) -> NotificationSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "smtp_port": smtp_port,
        "smtp_timeout_s": 5,
        "grpc_port": 0,
        "metrics_port": 0,
        "jwks_source": str(jwks),
        "jwt_issuer": issuer.issuer,
        "jwt_audience": issuer.audience,
        "drain_s": 0,
        "shutdown_grace_s": 1,
        "deliver_all": False,
        "message_id_domain": DOMAIN,
        "max_attempts": 4,
        "retry_base_s": 0.3,
        "retry_max_s": 1.0,
        "claim_lease_s": 15,
        "dispatch_idle_s": 0.2,
    }
    values.update(more)
    return NotificationSettings(**values)


async def consumers_exist(js: JetStreamContext) -> bool:
    for stream in STREAMS:
        try:
            await js.consumer_info(stream, DURABLE)
        except NotFoundError:
            return False
    return True


async def started(app: NotificationApp, js: JetStreamContext) -> NotificationApp:
    """Start `app` and wait until its durable consumers exist (they only see later events)."""
    await app.start()
    await eventually(lambda: consumers_exist(js), within_s=30)
    return app


async def consumers_idle(js: JetStreamContext) -> bool:
    for stream in STREAMS:
        info = await js.consumer_info(stream, DURABLE)
        if info.num_pending or info.num_ack_pending:
            return False
    return True
