"""The whole system as real processes, exporting traces to a Jaeger, and one run through it.

`ObservedSystem.start` runs the six services (`python -m services.<name>`) and the SMTP sink
on the stores it is given, each on free 127.0.0.1 ports, at DEBUG level, with
`<PREFIX>_OTLP_ENDPOINT` pointing at Jaeger. `booking_run` drives a full run through their
gRPC APIs and waits until every event has been handled, so what the run leaves behind —
traces, metrics, logs — is complete when it returns.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.notification.v1 import notification_pb2, notification_pb2_grpc
from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from cinema.review.v1 import review_pb2, review_pb2_grpc
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from scripts.observability.jaeger import JaegerSpec, otlp_env
from scripts.stack.paths import REPO
from scripts.stack.process import ManagedProcess, ProcessFailed, free_port, port_open
from scripts.stack.services import Identity, ServiceProcess
from services.kit.grpc_errors import find_detail
from tests.support.polling import eventually

APPROVED_CARD = "4242424242424242"
DECLINED_CARD = "4000000000009995"  # insufficient funds in the simulated processor
STATE = reservation_pb2.ReservationState

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Stores:
    postgres_url: Callable[[str], Awaitable[str]]  # a fresh database named after the service
    mongo_url: str
    mongo_prefix: str
    redis_url: str
    nats_url: str


def _common_env(prefix: str, port: int, metrics_port: int, identity: Identity, spec: JaegerSpec) -> dict[str, str]:
    return {
        f"{prefix}_GRPC_PORT": str(port),
        f"{prefix}_METRICS_PORT": str(metrics_port),
        f"{prefix}_LOG_LEVEL": "DEBUG",
        f"{prefix}_DRAIN_S": "0.2",
        **otlp_env(prefix, spec),
        **identity.auth_env(prefix),
        # Export spans within a fraction of a second (the SDK's default waits 5 s).
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


async def _start(process: ServiceProcess, attempts: int = 3) -> None:
    """Start a service; again if the forked child died of a signal before it ran.

    ManagedProcess forks (its preexec_fn forbids vfork), and in a test process where gRPC
    already runs its event-engine threads, gRPC's fork handler can restart a poller in the
    child that then finds its epoll fd closed by Popen and aborts (SIGABRT, exit -6, the log
    holding only "epoll_wait error: Bad file descriptor"). That child never reached `exec`:
    starting again is safe.
    """
    for attempt in range(1, attempts + 1):
        try:
            await asyncio.to_thread(process.start)
            return
        except ProcessFailed:
            code = process.process.popen.returncode if process.process.popen else None
            await asyncio.to_thread(process.stop)
            if code is None or code >= 0 or attempt == attempts:
                raise


@dataclass
class ObservedSystem:
    root: Path
    identity: Identity
    jaeger: JaegerSpec
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    smtp: ManagedProcess | None = None
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @classmethod
    async def start(cls, root: Path, stores: Stores, jaeger: JaegerSpec) -> ObservedSystem:
        system = cls(root, Identity(root), jaeger)
        try:
            await system._start(stores)
        except BaseException:
            await system.stop()
            raise
        return system

    async def _start(self, stores: Stores) -> None:
        smtp_port = free_port()
        self.smtp = ManagedProcess(
            "smtp",
            [sys.executable, "-m", "scripts.smtp_sink", "--port", str(smtp_port), "--dir", str(self.root / "mail")],
            self.root / "smtp.log",
            lambda: port_open(smtp_port),
            cwd=REPO,
        )
        self.smtp.start()
        self.smtp.wait_ready(30)
        for name in ("reservation", "payment", "notification"):
            self.databases[name] = await stores.postgres_url(name)
        envs: dict[str, dict[str, str]] = {
            "payment": {"PAYMENT_DATABASE_URL": self.databases["payment"], "PAYMENT_NATS_URL": stores.nats_url},
            "movie": {
                "MOVIE_MONGO_URL": stores.mongo_url,
                "MOVIE_MONGO_DATABASE": f"{stores.mongo_prefix}movie_{uuid.uuid4().hex[:8]}",
                "MOVIE_NATS_URL": stores.nats_url,
            },
            "review": {
                "REVIEW_MONGO_URL": stores.mongo_url,
                "REVIEW_MONGO_DATABASE": f"{stores.mongo_prefix}review_{uuid.uuid4().hex[:8]}",
                "REVIEW_NATS_URL": stores.nats_url,
            },
            "viewpage": {
                "VIEWPAGE_REDIS_URL": stores.redis_url,
                "VIEWPAGE_KEY_PREFIX": f"obs{uuid.uuid4().hex[:8]}",
                "VIEWPAGE_NATS_URL": stores.nats_url,
            },
            "notification": {
                "NOTIFICATION_DATABASE_URL": self.databases["notification"],
                "NOTIFICATION_NATS_URL": stores.nats_url,
                "NOTIFICATION_SMTP_HOST": "127.0.0.1",
                "NOTIFICATION_SMTP_PORT": str(smtp_port),
            },
        }
        ports = {name: free_port() for name in (*envs, "reservation")}
        envs["reservation"] = {
            "RESERVATION_DATABASE_URL": self.databases["reservation"],
            "RESERVATION_NATS_URL": stores.nats_url,
            "RESERVATION_PAYMENT_ADDRESS": f"127.0.0.1:{ports['payment']}",
            "RESERVATION_PAYMENT_TOKEN_FILE": str(self.identity.service_token_file("reservation")),
        }
        # Consumers first, so they exist before the first event; payment before its caller.
        for name in ("viewpage", "notification", "payment", "reservation", "movie", "review"):
            self.metrics_ports[name] = free_port()
            env = {
                **_common_env(name.upper(), ports[name], self.metrics_ports[name], self.identity, self.jaeger),
                **envs[name],
            }
            process = ServiceProcess(name, ports[name], env, self.root / f"{name}.log")
            self.services[name] = process
            await _start(process)
        # Channels only now: while grpc.aio runs its poller in this process, a fork may abort (see _start).
        for name, process in self.services.items():
            self.channels[name] = grpc.aio.insecure_channel(process.address)

    async def stop(self) -> None:
        for channel in self.channels.values():
            await channel.close(None)
        for process in self.services.values():
            process.process.request_stop()  # all at once: each drains for a moment
        for process in self.services.values():
            await asyncio.to_thread(process.stop)
        if self.smtp is not None:
            await asyncio.to_thread(self.smtp.stop)

    def logs(self) -> dict[str, str]:
        return {name: process.log() for name, process in self.services.items()}

    # -- callers -------------------------------------------------------------------------

    def manager(self) -> Metadata:
        return tuple(self.identity.issuer.metadata(self.identity.issuer.mint("manager-1", roles={"manager"})))

    def customer(self, subject: str) -> Metadata:
        return self.identity.customer(subject)

    @property
    def movies(self) -> movie_pb2_grpc.MovieServiceAsyncStub:
        return movie_pb2_grpc.MovieServiceStub(self.channels["movie"])

    @property
    def reservations(self) -> reservation_pb2_grpc.ReservationServiceAsyncStub:
        return reservation_pb2_grpc.ReservationServiceStub(self.channels["reservation"])

    @property
    def reviews(self) -> review_pb2_grpc.ReviewServiceAsyncStub:
        return review_pb2_grpc.ReviewServiceStub(self.channels["review"])

    @property
    def board(self) -> board_pb2_grpc.BoardServiceAsyncStub:
        return board_pb2_grpc.BoardServiceStub(self.channels["viewpage"])

    @property
    def notifications(self) -> notification_pb2_grpc.NotificationServiceAsyncStub:
        return notification_pb2_grpc.NotificationServiceStub(self.channels["notification"])


@dataclass
class BookingRun:
    """What one run did: the ids to look for in traces, metrics and logs."""

    customer: str
    customer_metadata: Metadata
    movie_id: str
    screening_id: str
    confirmed: dict[str, list[str]]  # reservation id -> seats, confirmed and still standing
    cancelled: dict[str, list[str]]  # confirmed, then cancelled (refunded)
    declined: str  # the reservation whose card was declined
    review_id: str
    tokens: list[str]  # every bearer token the run sent

    @property
    def seats_sold(self) -> int:
        return sum(len(s) for s in self.confirmed.values()) + sum(len(s) for s in self.cancelled.values())


def _card(number: str) -> Card:
    return Card(number=number, expiry_month=12, expiry_year=2035, cvc="123")


async def booking_run(system: ObservedSystem) -> BookingRun:
    """A catalog, two confirmed reservations (one then cancelled), a declined card, a review."""
    manager = system.manager()
    customer = f"customer-{uuid.uuid4().hex[:6]}"
    me = system.customer(customer)
    other = system.customer(f"{customer}-b")
    tokens = [dict(m)["authorization"].removeprefix("Bearer ") for m in (manager, me, other)]

    created = await system.movies.CreateMovie(
        movie_pb2.CreateMovieRequest(
            movie=movie_pb2.Movie(title="Arrival", duration_minutes=116, genres=["sci-fi"], description="Aliens."),
            request_id=str(uuid.uuid4()),
        ),
        metadata=manager,
        timeout=10,
    )
    movie_id = created.movie.id
    screening = movie_pb2.Screening(
        hall="1", seat_map=SeatMap(rows=5, seats_per_row=10), price=Money(minor_units=1200, currency_code="EUR")
    )
    screening.start_time.FromDatetime(datetime.now(UTC) + timedelta(days=2))
    scheduled = await system.movies.ScheduleScreening(
        movie_pb2.ScheduleScreeningRequest(movie_id=movie_id, screening=screening, request_id=str(uuid.uuid4())),
        metadata=manager,
        timeout=10,
    )
    screening_id = scheduled.screening.id

    async def sellable() -> bool:
        try:
            await system.reservations.GetSeatAvailability(
                reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id), timeout=2
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True

    await eventually(sellable, every_s=0.2, what="the reservation service learns of the screening")

    async def reserve(seats: list[str], number: str, who: Metadata) -> reservation_pb2.Reservation:
        reply = await system.reservations.CreateReservation(
            reservation_pb2.CreateReservationRequest(
                screening_id=screening_id, seats=seats, request_id=str(uuid.uuid4()), card=_card(number)
            ),
            metadata=who,
            timeout=10,
        )
        assert reply.reservation.state == STATE.RESERVATION_STATE_CONFIRMED
        return reply.reservation

    kept = await reserve(["A1", "A2"], APPROVED_CARD, me)
    dropped = await reserve(["B1", "B2", "B3"], APPROVED_CARD, me)
    await system.reservations.CancelReservation(
        reservation_pb2.CancelReservationRequest(reservation_id=dropped.id, reason="plans changed"),
        metadata=me,
        timeout=10,
    )
    try:
        await reserve(["C1"], DECLINED_CARD, other)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = find_detail(error, error_details_pb2.ErrorInfo)
        assert info is not None and info.reason == "PAYMENT_DECLINED"
        declined = info.metadata["reservation"]
    else:
        raise AssertionError("the declined card was accepted")

    posted = await system.reviews.CreateReview(
        review_pb2.CreateReviewRequest(
            movie_id=movie_id, review=review_pb2.Review(rating=5, text="Loved it."), request_id=str(uuid.uuid4())
        ),
        metadata=me,
        timeout=10,
    )
    run = BookingRun(
        customer=customer,
        customer_metadata=me,
        movie_id=movie_id,
        screening_id=screening_id,
        confirmed={kept.id: list(kept.seats)},
        cancelled={dropped.id: list(dropped.seats)},
        declined=declined,
        review_id=posted.review.id,
        tokens=tokens,
    )
    await _settled(system, run)
    return run


async def _settled(system: ObservedSystem, run: BookingRun) -> None:
    """Every consumer has handled the run's events: the board and the mailbox show them."""

    async def board_shows_everything() -> bool:
        shown = await system.board.GetMovieBoard(board_pb2.GetMovieBoardRequest(movie_id=run.movie_id), timeout=5)
        screenings = [s for s in shown.movie.screenings if s.screening_id == run.screening_id]
        # 50 seats; only the kept reservation's 2 stand (the cancelled 3 came back).
        return bool(screenings) and screenings[0].free_seats == 48 and shown.movie.review_count == 1

    async def mail_for_every_change() -> bool:
        mail = await system.notifications.ListNotifications(
            notification_pb2.ListNotificationsRequest(page_size=50), metadata=run.customer_metadata, timeout=5
        )
        # Two confirmations, one cancellation, one refund.
        return len(mail.notifications) >= 4

    async def movie_counts_the_review() -> bool:
        got = await system.movies.GetMovie(movie_pb2.GetMovieRequest(movie_id=run.movie_id), timeout=5)
        return bool(got.movie.review_count == 1)

    await eventually(board_shows_everything, every_s=0.2, what="the board shows the run")
    await eventually(
        mail_for_every_change, every_s=0.2, what="a notification for every change of the customer's reservations"
    )
    await eventually(movie_counts_the_review, every_s=0.2, what="the movie counts the review")
