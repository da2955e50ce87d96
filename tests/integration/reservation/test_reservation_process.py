"""The reservation service as its own process, configured only by RESERVATION_* variables, in
front of the payment service as its own process: migrate command, a booking end to end,
graceful SIGTERM. The shape the system tests (kill -9, many customers) build on."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS

from cinema.reservation.v1 import reservation_pb2 as pb
from cinema.reservation.v1 import reservation_pb2_grpc
from scripts.stack.process import free_port
from services.kit import pg
from services.kit.events import jetstream
from services.kit.testing_tokens import LocalTokenIssuer
from services.reservation.adapters.postgres import MIGRATIONS
from tests.integration.reservation.helpers import create_request, eventually, schedule
from tests.integration.reservation.processes import ServiceProcess
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration


def auth_env(prefix: str, issuer: LocalTokenIssuer, jwks: Path) -> dict[str, str]:
    return {
        f"{prefix}_JWKS_SOURCE": str(jwks),
        f"{prefix}_JWT_ISSUER": issuer.issuer,
        f"{prefix}_JWT_AUDIENCE": issuer.audience,
        f"{prefix}_METRICS_PORT": "0",
        f"{prefix}_DRAIN_S": "0.2",
        f"{prefix}_SHUTDOWN_GRACE_S": "2",
    }


async def test_reservation_process_books_through_payment_process_and_stops_on_sigterm(
    postgres_server: Server, nats_server: Server, tmp_path: Path
) -> None:
    issuer = LocalTokenIssuer()
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    token_file = tmp_path / "payment-token"
    token_file.write_text(issuer.mint("reservation", roles={"service"}, ttl_s=3600))
    payment_port = free_port()
    payment_env = auth_env("PAYMENT", issuer, jwks) | {
        "PAYMENT_DATABASE_URL": await create_database(postgres_server, "payment"),
        "PAYMENT_NATS_URL": nats_server.url,
        "PAYMENT_GRPC_PORT": str(payment_port),
    }
    reservation_db = await create_database(postgres_server, "reservation")
    reservation_env = auth_env("RESERVATION", issuer, jwks) | {
        "RESERVATION_DATABASE_URL": reservation_db,
        "RESERVATION_NATS_URL": nats_server.url,
        "RESERVATION_GRPC_PORT": "0",
        "RESERVATION_PAYMENT_ADDRESS": f"127.0.0.1:{payment_port}",
        "RESERVATION_PAYMENT_TOKEN_FILE": str(token_file),
        "RESERVATION_RECONCILER_INTERVAL_S": "0.5",
    }

    assert await ServiceProcess.run("reservation", reservation_env, ("migrate",)) == 0
    assert await ServiceProcess.run("reservation", reservation_env, ("migrate",)) == 0  # idempotent
    versions = await _migrations(reservation_db)
    assert versions == [m.version for m in pg.load_migrations(MIGRATIONS)]  # every one, once

    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js)
    payment = await ServiceProcess.start("payment", payment_env)
    reservation = await ServiceProcess.start("reservation", reservation_env)
    try:
        async with grpc.aio.insecure_channel(reservation.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING

            stub = reservation_pb2_grpc.ReservationServiceStub(channel)
            screening_id = await schedule(js)

            async def in_replica() -> pb.GetSeatAvailabilityResponse | None:
                try:
                    return await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
                except grpc.aio.AioRpcError as error:
                    if error.code() is grpc.StatusCode.NOT_FOUND:
                        return None
                    raise

            await eventually(in_replica, within_s=20)
            me = issuer.metadata(issuer.mint(f"customer-{uuid.uuid4().hex[:6]}", roles={"customer"}))
            made = await stub.CreateReservation(create_request(screening_id, ["A1", "A2"]), metadata=me, timeout=10)
            assert made.reservation.state == pb.RESERVATION_STATE_CONFIRMED

        assert await reservation.terminate() == 0
        messages = reservation.messages()
        assert messages.index("service stopping") < messages.index("service stopped")
        assert all(line.get("service") == "reservation" for line in reservation.lines if "timestamp" in line)
        assert not [line for line in reservation.lines if line.get("level") == "ERROR"], reservation.lines
        assert await payment.terminate() == 0
    finally:
        await reservation.close()
        await payment.close()
        await nc.close()


async def _migrations(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()
