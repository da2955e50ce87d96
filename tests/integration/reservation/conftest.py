"""Fixtures of the reservation integration tests: the real reservation service, in front of the
real payment service, on real PostgreSQL and NATS.

Both services run in-process through their composition roots and the kit's ServiceHost (real
gRPC on free ports, a database of their own each), wired exactly as `python -m services.<name>`
wires them. Payment listens on a fixed free port so that a test can stop it and start it again
at the same address (payment down, payment back).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc.aio
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.stack.process import free_port
from services.kit.events import jetstream
from services.kit.server import ServiceHost
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.bootstrap import PaymentApp
from services.payment.entrypoints.reservation_events import DURABLE as PAYMENT_DURABLE
from services.payment.settings import PaymentSettings
from services.reservation.bootstrap import ReservationApp
from services.reservation.entrypoints.catalog_consumer import DURABLE as RESERVATION_DURABLE
from services.reservation.settings import ReservationSettings
from tests.support.servers import Server, create_database

Metadata = tuple[tuple[str, str]]


@pytest.fixture(scope="module")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="module")
def jwks_path(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issuer.write_jwks(tmp_path_factory.mktemp("reservation-jwks") / "jwks.json")


@pytest.fixture(scope="module")
def payment_token_file(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The token reservation presents to payment: role `service`, subject `reservation`."""
    path = tmp_path_factory.mktemp("reservation-secrets") / "payment-token"
    path.write_text(issuer.mint("reservation", roles={"service"}, ttl_s=3600))
    return path


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    # This module's services start their consumers afresh, not where an earlier module's stopped.
    for stream, durable in (("CINEMA_MOVIE", RESERVATION_DURABLE), ("CINEMA_RESERVATION", PAYMENT_DURABLE)):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, durable)
    yield js
    await nc.close()


class PaymentService:
    """The real payment service, in-process, stoppable and restartable at one address."""

    def __init__(self, settings: PaymentSettings, warm_up_token: Metadata) -> None:
        self.settings = settings
        self._warm_up_token = warm_up_token
        self.app: PaymentApp | None = None
        self._host: ServiceHost | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.grpc_port}"

    async def start(self) -> None:
        assert self._host is None, "payment is already running"
        self.app = PaymentApp(self.settings)
        self._host = self.app.host()
        await self._host.start()
        await self.app.events_ready.wait()
        # One authenticated call first: the kit's JwksCache answers UNAVAILABLE to requests that
        # arrive while its very first key load is in flight (reported to the kit's owner).
        async with grpc.aio.insecure_channel(self.address) as channel:
            with contextlib.suppress(grpc.aio.AioRpcError):  # NOT_FOUND: no such payment
                await payment_pb2_grpc.PaymentServiceStub(channel).GetPaymentByReservation(
                    payment_pb2.GetPaymentByReservationRequest(reservation_id=str(uuid.uuid4())),
                    metadata=self._warm_up_token,
                )

    async def stop(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            await host.stop()


@pytest.fixture(scope="module")
async def payment(
    postgres_server: Server, nats_server: Server, js: JetStreamContext, issuer: LocalTokenIssuer, jwks_path: Path
) -> AsyncIterator[PaymentService]:
    settings = PaymentSettings(
        database_url=await create_database(postgres_server, "payment"),
        nats_url=nats_server.url,
        grpc_port=free_port(),
        metrics_enabled=False,
        jwks_source=str(jwks_path),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        drain_s=0,
        shutdown_grace_s=0.5,
    )
    service = PaymentService(settings, issuer.metadata(issuer.mint("warm-up", roles={"manager"})))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture(scope="module")
async def payment_stub(payment: PaymentService) -> AsyncIterator[payment_pb2_grpc.PaymentServiceAsyncStub]:
    async with grpc.aio.insecure_channel(payment.address) as channel:
        yield payment_pb2_grpc.PaymentServiceStub(channel)


def reservation_settings(
    database_url: str, nats_url: str, payment_address: str, token_file: Path, issuer: LocalTokenIssuer, jwks: Path
) -> ReservationSettings:
    return ReservationSettings(
        database_url=database_url,
        nats_url=nats_url,
        payment_address=payment_address,
        payment_token_file=str(token_file),
        grpc_port=0,
        metrics_enabled=False,
        jwks_source=str(jwks),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        reconciler_interval_s=0.2,
        reconciler_window_s=1.5,
        # Short enough for a test to see a reservation failed for lack of a payment, long
        # enough for a slow payment's outcome to settle it first.
        pending_window_s=8.0,
        payment_work_limit_s=3.0,
        payment_wait_ms=3000,
        retry_after_s=1.0,
        drain_s=0,
        shutdown_grace_s=0.5,
    )


@pytest.fixture(scope="module")
async def reservation_db(postgres_server: Server) -> str:
    return await create_database(postgres_server, "reservation")


@pytest.fixture(scope="module")
async def reservation(
    reservation_db: str,
    nats_server: Server,
    payment: PaymentService,
    payment_token_file: Path,
    issuer: LocalTokenIssuer,
    jwks_path: Path,
) -> AsyncIterator[tuple[ReservationApp, ServiceHost]]:
    settings = reservation_settings(
        reservation_db, nats_server.url, payment.address, payment_token_file, issuer, jwks_path
    )
    app = ReservationApp(settings)
    async with app.host() as host:
        await app.wait_events_ready()
        yield app, host


@pytest.fixture(scope="module")
def app(reservation: tuple[ReservationApp, ServiceHost]) -> ReservationApp:
    return reservation[0]


@pytest.fixture(scope="module")
def pool(app: ReservationApp) -> asyncpg.Pool:
    return app.pool


@pytest.fixture(scope="module")
async def stub(
    reservation: tuple[ReservationApp, ServiceHost], issuer: LocalTokenIssuer
) -> AsyncIterator[reservation_pb2_grpc.ReservationServiceAsyncStub]:
    async with grpc.aio.insecure_channel(reservation[1].address) as channel:
        stub = reservation_pb2_grpc.ReservationServiceStub(channel)
        # One authenticated call first: the kit's JwksCache answers UNAVAILABLE to requests that
        # arrive while its very first key load is in flight (reported to the kit's owner).
        await stub.ListReservations(
            reservation_pb2.ListReservationsRequest(), metadata=issuer.metadata(issuer.mint("warm-up"))
        )
        yield stub
