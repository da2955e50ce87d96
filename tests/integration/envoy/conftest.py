"""Real Envoy in front of real Cinema service processes, on the throwaway stores.

One edge for the package: movie, reservation and TWO payment instances (one database, one
NATS of their own), Envoy rendered by `mesh.envoy` from helm/cinema/values.yaml on free ports,
verifying tokens with the local JWKS file of a test issuer. Reservation reaches payment through
Envoy's payment egress listener, as in `make up`. Tests that kill payment instances leave them
running again (`payments_restored`).
"""

from __future__ import annotations

import os

# These tests start and kill service processes (fork + exec) while gRPC's threads run in this
# process; gRPC's fork handlers then sometimes abort the child before its exec (seen: exit -6,
# "epoll_wait error: Bad file descriptor"). Read when grpc is first imported: effective when this
# package runs on its own; a whole `make test` run needs it set before any test imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest
from nats.aio.client import Client as NATS

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1.events_pb2 import MovieRegistered, ScreeningScheduled
from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from mesh.envoy import Address, JwksUrl
from mesh.policy import EdgeRateLimit
from scripts.stack.process import free_port
from scripts.stack.services import Identity, ServiceProcess, payment_process, reservation_process
from scripts.stack.stores import scratch_dir
from services.kit.events import envelope as env
from services.kit.events import jetstream
from tests.integration.envoy.proxy import EnvoyProxy
from tests.support.servers import Server, create_database, start_nats

Metadata = tuple[tuple[str, str], ...]


def movie_process(root: Path, identity: Identity, mongo_url: str, database: str, nats_url: str) -> ServiceProcess:
    port = free_port()
    env = {
        "MOVIE_MONGO_URL": mongo_url,
        "MOVIE_MONGO_DATABASE": database,
        "MOVIE_NATS_URL": nats_url,
        "MOVIE_GRPC_PORT": str(port),
        "MOVIE_METRICS_PORT": str(free_port()),
        "MOVIE_DRAIN_S": "0.2",
        **identity.auth_env("MOVIE"),
    }
    return ServiceProcess("movie", port, env, root / "movie.log")


async def started(process: ServiceProcess) -> ServiceProcess:
    await asyncio.to_thread(process.start)
    return process


async def warm_up_payment(address: str, token: Metadata) -> None:
    """One authenticated call: the kit's JWKS cache answers UNAVAILABLE while its first load runs."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = payment_pb2_grpc.PaymentServiceStub(channel)
        for _ in range(50):
            try:
                await stub.GetPaymentByReservation(
                    payment_pb2.GetPaymentByReservationRequest(reservation_id=str(uuid.uuid4())),
                    metadata=token,
                    timeout=2,
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"payment at {address} never answered an authenticated call")


@dataclass
class Edge:
    root: Path
    identity: Identity
    nats: Server
    mongo: Server
    payment_db: str
    payments: list[ServiceProcess]
    movie: ServiceProcess
    reservation: ServiceProcess
    envoy: EnvoyProxy

    @property
    def issuer(self) -> str:
        return self.identity.issuer.issuer

    def token(self, subject: str = "customer-1", roles: tuple[str, ...] = ("customer",)) -> Metadata:
        minted = self.identity.issuer.mint(subject, roles=roles, extra_claims={"email": f"{subject}@example.test"})
        return tuple(self.identity.issuer.metadata(minted))

    def service_token(self) -> Metadata:
        return self.token("reservation", ("service",))

    def payment_addresses(self) -> set[str]:
        return {p.address for p in self.payments}

    async def publish_screening(self, rows: int = 6, seats_per_row: int = 10) -> str:
        """The catalog events of a new screening (as the movie service publishes them); returns
        once the reservation service's replica knows the screening."""
        movie_id, screening_id = str(uuid.uuid4()), str(uuid.uuid4())
        screening = ScreeningScheduled(
            screening_id=screening_id, movie_id=movie_id, movie_title="Arrival", duration_minutes=116, hall="1",
            seat_map=SeatMap(rows=rows, seats_per_row=seats_per_row),
            price=Money(minor_units=1200, currency_code="EUR"),
        )  # fmt: skip
        screening.start_time.FromDatetime(datetime.now(UTC) + timedelta(days=3))
        movie = MovieRegistered(movie_id=movie_id, title="Arrival", duration_minutes=116, genres=["sci-fi"])
        nc = NATS()
        await nc.connect(self.nats.url)
        try:
            js = nc.jetstream()
            await jetstream.ensure_streams(js)
            for event, aggregate in ((movie, movie_id), (screening, screening_id)):
                wrapped = env.wrap(
                    event, source="cinema/movie", subject=aggregate, aggregate_id=aggregate, aggregate_version=1
                )
                await jetstream.publish(js, wrapped)
        finally:
            await nc.close()
        async with grpc.aio.insecure_channel(self.reservation.address) as channel:
            stub = reservation_pb2_grpc.ReservationServiceStub(channel)
            for _ in range(200):
                try:
                    await stub.GetSeatAvailability(
                        reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id), timeout=2
                    )
                    return screening_id
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                await asyncio.sleep(0.05)
        raise AssertionError(f"reservation never learned of screening {screening_id}")

    def new_envoy(
        self,
        name: str,
        upstreams: Mapping[str, list[Address]] | None = None,
        rate_limit: EdgeRateLimit | None = None,
        jwks: JwksUrl | None = None,
    ) -> EnvoyProxy:
        """Another Envoy on the same services (its own ports and log), e.g. with a small rate limit."""
        hosts = {
            "payment": [("127.0.0.1", p.port) for p in self.payments],
            "movie": [("127.0.0.1", self.movie.port)],
            "reservation": [("127.0.0.1", self.reservation.port)],
        } | dict(upstreams or {})
        return EnvoyProxy.on_free_ports(
            self.root / name, hosts, jwks or self.identity.jwks_path, self.issuer, rate_limit=rate_limit
        )


@pytest.fixture(scope="package")
def edge_nats() -> Iterator[Server]:
    server = start_nats()
    yield server
    server.cleanup()


@pytest.fixture(scope="package")
async def edge(postgres_server: Server, mongo_server: Server, edge_nats: Server) -> AsyncIterator[Edge]:
    root = scratch_dir("edge")
    identity = Identity(root)
    payment_db = await create_database(postgres_server, "payment")
    reservation_db = await create_database(postgres_server, "reservation")
    payments = [payment_process(root / f"payment-{i}", identity, payment_db, edge_nats.url) for i in "ab"]
    movie_db = f"{mongo_server.extra['db_prefix']}movie_{uuid.uuid4().hex[:8]}"
    movie = movie_process(root, identity, mongo_server.url, movie_db, edge_nats.url)
    running: list[ServiceProcess] = []
    proxy: EnvoyProxy | None = None
    try:
        # the first payment migrates its database before the second one starts on it
        running.append(await started(payments[0]))
        running += await asyncio.gather(started(payments[1]), started(movie))
        proxy = EnvoyProxy.on_free_ports(
            root / "envoy",
            {"payment": [("127.0.0.1", p.port) for p in payments], "movie": [("127.0.0.1", movie.port)]},
            identity.jwks_path,
            identity.issuer.issuer,
        )
        reservation = reservation_process(root, identity, reservation_db, edge_nats.url, proxy.egress("payment"))
        proxy.options.upstreams["reservation"] = [("127.0.0.1", reservation.port)]
        running.append(await started(reservation))
        await proxy.start()
        system = Edge(root, identity, edge_nats, mongo_server, payment_db, payments, movie, reservation, proxy)
        for payment in payments:
            await warm_up_payment(payment.address, system.service_token())
        await proxy.wait_healthy("payment", system.payment_addresses())
        await proxy.wait_healthy("reservation", {reservation.address})
        yield system
    finally:
        if proxy is not None:
            await proxy.stop()
        for process in reversed(running):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(process.stop)


@pytest.fixture
async def payments_restored(edge: Edge) -> AsyncIterator[Edge]:
    """For tests that kill payment instances: afterwards every instance runs and Envoy routes to it."""
    yield edge
    stopped = [payment for payment in edge.payments if not payment.process.running()]
    await asyncio.gather(*(started(payment) for payment in stopped))
    for payment in stopped:
        await warm_up_payment(payment.address, edge.service_token())
    await edge.envoy.wait_healthy("payment", edge.payment_addresses())
