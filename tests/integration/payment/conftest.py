"""Fixtures of the payment integration tests: one real payment service per test module.

The service runs in-process through the kit's ServiceHost (real gRPC on a free port, real
PostgreSQL database of its own, real NATS), exactly as `python -m services.payment` wires it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import grpc.aio
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cinema.payment.v1 import payment_pb2_grpc
from services.kit.events import jetstream
from services.kit.server import ServiceHost
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.adapters.processor import SimulatedCardProcessor
from services.payment.bootstrap import PaymentApp
from services.payment.entrypoints.reservation_events import DURABLE
from services.payment.settings import PaymentSettings
from tests.support.servers import Server, create_database

if TYPE_CHECKING:
    from cinema.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub

Metadata = tuple[tuple[str, str]]


@pytest.fixture(scope="session")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="session")
def jwks_path(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issuer.write_jwks(tmp_path_factory.mktemp("payment-jwks") / "jwks.json")


@pytest.fixture(scope="session")
def service_token(issuer: LocalTokenIssuer) -> Metadata:
    """What the reservation service presents: a token of role `service` naming it."""
    return issuer.metadata(issuer.mint("reservation", roles={"service"}, ttl_s=3600))


@pytest.fixture(scope="session")
def manager_token(issuer: LocalTokenIssuer) -> Metadata:
    return issuer.metadata(issuer.mint("manager-1", roles={"manager"}, ttl_s=3600))


@pytest.fixture(scope="session")
def customer_token(issuer: LocalTokenIssuer) -> Metadata:
    return issuer.metadata(issuer.mint("customer-1", roles={"customer"}, ttl_s=3600))


@pytest.fixture(scope="module")
async def payment_db(postgres_server: Server) -> str:
    return await create_database(postgres_server, "payment")


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    # Each module's service starts its consumer afresh, not where an earlier module's left off.
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer("CINEMA_RESERVATION", DURABLE)
    yield js
    await nc.close()


def payment_settings(database_url: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path) -> PaymentSettings:
    return PaymentSettings(
        database_url=database_url,
        nats_url=nats_url,
        grpc_port=0,
        metrics_port=0,
        jwks_source=str(jwks),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        drain_s=0,
        shutdown_grace_s=1,
    )


@pytest.fixture(scope="module")
async def host(
    payment_db: str, nats_server: Server, js: JetStreamContext, issuer: LocalTokenIssuer, jwks_path: Path
) -> AsyncIterator[tuple[PaymentApp, ServiceHost]]:
    app = PaymentApp(payment_settings(payment_db, nats_server.url, issuer, jwks_path))
    async with app.host() as running:
        yield app, running


@pytest.fixture(scope="module")
def app(host: tuple[PaymentApp, ServiceHost]) -> PaymentApp:
    return host[0]


@pytest.fixture(scope="module")
def processor(app: PaymentApp) -> SimulatedCardProcessor:
    assert isinstance(app.processor, SimulatedCardProcessor)
    return app.processor


@pytest.fixture(scope="module")
def pool(app: PaymentApp) -> asyncpg.Pool:
    assert app.pool is not None
    return app.pool


@pytest.fixture(scope="module")
async def stub(host: tuple[PaymentApp, ServiceHost]) -> AsyncIterator[PaymentServiceAsyncStub]:
    async with grpc.aio.insecure_channel(host[1].address) as channel:
        yield payment_pb2_grpc.PaymentServiceStub(channel)
