"""The six Cinema services as real processes on throwaway stores, for the fuzz tests.

Each service runs as `python -m services.<name>` configured by its environment, like a
deployment (scripts.stack.services), against the session's PostgreSQL, MongoDB (FerretDB) and
Redis and a NATS of its own; the SMTP sink takes the notification mail. Callers come in five
kinds (`ROLES`): anonymous, customer, manager, service and a forged token. After start-up a
small catalog is seeded through the APIs (a movie, a screening, a reservation with its payment,
a review, the notification of that reservation) so that nearly-valid requests can name things
that exist and reach the use cases.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from hypothesis import strategies as st

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.notification.v1 import notification_pb2, notification_pb2_grpc
from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from cinema.review.v1 import review_pb2, review_pb2_grpc
from scripts.stack.paths import REPO
from scripts.stack.process import ManagedProcess, free_port, port_open
from scripts.stack.services import Identity, ServiceProcess, payment_process, reservation_process
from tests.fuzz.strategies import Hints

ROLES = ("anonymous", "customer", "other-customer", "manager", "service", "forged")
# How often each kind of caller is drawn: the ones that may do something more often, so more
# requests get past authorization into the use cases.
ROLE_DRAWS = ("customer", "manager", "service", "customer", "manager", "anonymous", "other-customer", "forged")
OWNER = "fuzz-customer-1"  # owns the seeded reservation, review and notification
STRANGER = "fuzz-customer-2"
MANAGER = "fuzz-manager"

APPROVE = "4242424242424242"
DECLINE = "4000000000009995"

SEAT_ROWS, SEATS_PER_ROW = 5, 10
SCREENING_START = datetime(2027, 6, 1, 18, 0, tzinfo=UTC)
SCREENING_HALL = "Hall 1"

# The context each service's package is named after (cinema.<context>.v1) -> its process name.
PROCESS_OF_CONTEXT = {
    "movie": "movie",
    "review": "review",
    "reservation": "reservation",
    "payment": "payment",
    "notification": "notification",
    "viewpage": "viewpage",
}


@dataclass
class LogCursor:
    """Where the fuzz test had read a service's log up to."""

    path: Path
    offset: int = 0

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        # Only whole lines; a line being written stays for the next read.
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode("utf-8", errors="replace").splitlines()


@dataclass
class Seeded:
    """Ids of what the seeding created, by the field names requests use for them."""

    movie_id: str = ""
    screening_id: str = ""
    reservation_id: str = ""
    payment_id: str = ""
    review_id: str = ""
    notification_id: str = ""


@dataclass
class FuzzSystem:
    identity: Identity
    processes: dict[str, ServiceProcess]
    reservation_db: str
    payment_db: str
    notification_db: str
    mongo_url: str
    movie_database: str
    review_database: str
    redis_url: str
    viewpage_prefix: str
    nats_url: str = ""  # where the dead-letter stream is read (tests/fuzz/invariants.py)
    seeded: Seeded = field(default_factory=Seeded)
    _tokens: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def process_for(self, service_full_name: str) -> ServiceProcess:
        """The process serving `cinema.<context>.v1.<Service>`."""
        context = service_full_name.split(".")[1]
        name = PROCESS_OF_CONTEXT.get(context)
        assert name is not None, f"no process serves {service_full_name}: add its context to PROCESS_OF_CONTEXT"
        return self.processes[name]

    def channel(self, process: ServiceProcess) -> grpc.Channel:
        if process.name not in self._channels:
            self._channels[process.name] = grpc.insecure_channel(process.address)
        return self._channels[process.name]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def metadata(self, role: str) -> tuple[tuple[str, str], ...]:
        if role not in self._tokens:
            self._tokens[role] = self._mint(role)
        return self._tokens[role]

    def _mint(self, role: str) -> tuple[tuple[str, str], ...]:
        issuer = self.identity.issuer
        if role == "anonymous":
            return ()
        if role == "customer":
            return self.identity.customer(OWNER)
        if role == "other-customer":
            return self.identity.customer(STRANGER)
        if role == "manager":
            return tuple(issuer.metadata(issuer.mint(MANAGER, roles={"manager"}, ttl_s=3600)))
        if role == "service":
            return tuple(issuer.metadata(issuer.mint("reservation", roles={"service"}, ttl_s=3600)))
        if role == "forged":
            # Signed by a key the services never saw, with every role: must be UNAUTHENTICATED.
            forged = issuer.mint("intruder", roles={"customer", "manager", "service"}, key=_stranger_key())
            return tuple(issuer.metadata(forged))
        raise AssertionError(f"unknown role {role}")

    def served_services(self, process: ServiceProcess) -> set[str]:
        """The services `process` itself says it serves (gRPC server reflection), health and
        reflection left out."""
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel(process))
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = set()
        for reply in stub.ServerReflectionInfo(iter([request]), timeout=10):
            names |= {service.name for service in reply.list_services_response.service}
        return {n for n in names if not n.startswith(("grpc.health.", "grpc.reflection."))}

    def log_cursors(self) -> dict[str, LogCursor]:
        """A cursor at the current end of every service's log."""
        cursors = {}
        for name, process in self.processes.items():
            size = process.log_path.stat().st_size if process.log_path.exists() else 0
            cursors[name] = LogCursor(process.log_path, size)
        return cursors

    def hints(self) -> Hints:
        """Values that get nearly-valid requests past "not found" into the use cases: the seeded
        ids (or a fresh UUID), seats of the seeded screening, cards the simulated processor
        approves or declines, halls and times near the seeded screening (hall overlaps)."""
        s = self.seeded

        def known_or_new(value: str) -> st.SearchStrategy[str]:
            return st.one_of(st.just(value), st.uuids().map(str))

        seats = [f"{row}{n}" for row in "ABCDE"[:SEAT_ROWS] for n in range(1, SEATS_PER_ROW + 1)]
        near_start = st.integers(-6 * 60, 6 * 60).map(lambda minutes: _timestamp(SCREENING_START, minutes))
        return Hints(
            {
                "movie_id": known_or_new(s.movie_id),
                "screening_id": known_or_new(s.screening_id),
                "reservation_id": known_or_new(s.reservation_id),
                "payment_id": known_or_new(s.payment_id),
                "review_id": known_or_new(s.review_id),
                "notification_id": known_or_new(s.notification_id),
                "cinema.movie.v1.Movie.id": known_or_new(s.movie_id),
                "cinema.reservation.v1.CreateReservationRequest.seats": st.lists(
                    st.sampled_from(seats), min_size=1, max_size=3, unique=True
                ),
                "cinema.payment.v1.Card.number": st.one_of(
                    st.sampled_from((APPROVE, APPROVE, DECLINE)), st.from_regex(r"[0-9]{12,19}", fullmatch=True)
                ),
                "cinema.payment.v1.Card.cvc": st.from_regex(r"[0-9]{3}", fullmatch=True),
                "cinema.payment.v1.Card.expiry_year": st.integers(2030, 2040),
                "cinema.movie.v1.Screening.hall": st.sampled_from((SCREENING_HALL, "Hall 2")),
                "cinema.movie.v1.Screening.start_time": near_start,
                "cinema.movie.v1.RescheduleScreeningRequest.start_time": near_start,
            }
        )


def _timestamp(base: datetime, minutes: int) -> Any:
    from datetime import timedelta

    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(base + timedelta(minutes=minutes))
    return stamp


_STRANGER_KEY: Any = None


def _stranger_key() -> Any:
    global _STRANGER_KEY
    if _STRANGER_KEY is None:
        from joserfc.jwk import RSAKey

        _STRANGER_KEY = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "alg": "RS256", "use": "sig"})
    return _STRANGER_KEY


def _service(name: str, root: Path, identity: Identity, env: dict[str, str]) -> ServiceProcess:
    prefix = name.upper()
    port = free_port()
    full_env = {
        f"{prefix}_GRPC_PORT": str(port),
        f"{prefix}_METRICS_PORT": str(free_port()),
        f"{prefix}_DRAIN_S": "0.2",
        **identity.auth_env(prefix),
        **{f"{prefix}_{key}": value for key, value in env.items()},
    }
    return ServiceProcess(name, port, full_env, root / f"{name}.log")


def smtp_sink(root: Path) -> tuple[ManagedProcess, int]:
    """The local SMTP sink (scripts/smtp_sink.py) the notification service delivers to, and its port."""
    port = free_port()
    argv = [sys.executable, "-m", "scripts.smtp_sink", "--port", str(port), "--dir", str(root / "mail")]
    return ManagedProcess("smtp", argv, root / "smtp.log", lambda: port_open(port), cwd=REPO), port


def start_services(
    root: Path,
    identity: Identity,
    *,
    reservation_db: str,
    payment_db: str,
    notification_db: str,
    mongo_url: str,
    mongo_prefix: str,
    redis_url: str,
    nats_url: str,
    smtp_port: int,
) -> FuzzSystem:
    """Start the six services at once (each waits for its own stores), then wait until all serve."""
    tag = uuid.uuid4().hex[:8]
    movie_database, review_database = f"{mongo_prefix}fuzz_movie_{tag}", f"{mongo_prefix}fuzz_review_{tag}"
    viewpage_prefix = f"fuzz{tag}"
    payment = payment_process(root, identity, payment_db, nats_url)
    processes = {
        "payment": payment,
        "reservation": reservation_process(root, identity, reservation_db, nats_url, payment.address),
        "movie": _service(
            "movie", root, identity, {"MONGO_URL": mongo_url, "MONGO_DATABASE": movie_database, "NATS_URL": nats_url}
        ),
        "review": _service(
            "review",
            root,
            identity,
            {"MONGO_URL": mongo_url, "MONGO_DATABASE": review_database, "NATS_URL": nats_url},
        ),
        "notification": _service(
            "notification",
            root,
            identity,
            {
                "DATABASE_URL": notification_db,
                "NATS_URL": nats_url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp_port),
                "DISPATCH_IDLE_S": "0.2",
            },
        ),
        "viewpage": _service(
            "viewpage", root, identity, {"REDIS_URL": redis_url, "KEY_PREFIX": viewpage_prefix, "NATS_URL": nats_url}
        ),
    }
    started: list[ServiceProcess] = []
    try:
        for process in processes.values():
            process.process.start()
            started.append(process)
        for process in processes.values():
            process.process.wait_ready(90)
    except BaseException:
        for process in started:
            process.stop()
        raise
    return FuzzSystem(
        identity,
        processes,
        reservation_db,
        payment_db,
        notification_db,
        mongo_url,
        movie_database,
        review_database,
        redis_url,
        viewpage_prefix,
        nats_url,
    )


def stop_services(system: FuzzSystem) -> None:
    system.close()
    for process in system.processes.values():
        process.process.request_stop()  # all at once: each drains in parallel
    for process in system.processes.values():
        process.stop()


# --------------------------------------------------------------------------- seeding


async def seed(system: FuzzSystem) -> Seeded:
    """A movie with a screening, a confirmed reservation (and its payment), a review and the
    notification of that reservation, created through the services' own APIs."""
    s = system.seeded
    channels = {name: grpc.aio.insecure_channel(p.address) for name, p in system.processes.items()}
    try:
        movies = movie_pb2_grpc.MovieServiceStub(channels["movie"])
        manager = system.metadata("manager")
        customer = system.metadata("customer")
        created = await movies.CreateMovie(
            movie_pb2.CreateMovieRequest(
                movie=movie_pb2.Movie(title="Arrival", duration_minutes=116, genres=["sci-fi"]),
                request_id=str(uuid.uuid4()),
            ),
            metadata=manager,
            timeout=30,
        )
        s.movie_id = created.movie.id
        screening = movie_pb2.Screening(
            hall=SCREENING_HALL,
            seat_map=SeatMap(rows=SEAT_ROWS, seats_per_row=SEATS_PER_ROW),
            price=Money(minor_units=1200, currency_code="EUR"),
        )
        screening.start_time.FromDatetime(SCREENING_START)
        scheduled = await movies.ScheduleScreening(
            movie_pb2.ScheduleScreeningRequest(movie_id=s.movie_id, screening=screening, request_id=str(uuid.uuid4())),
            metadata=manager,
            timeout=30,
        )
        s.screening_id = scheduled.screening.id

        reservations = reservation_pb2_grpc.ReservationServiceStub(channels["reservation"])
        await _eventually(
            lambda: reservations.GetSeatAvailability(
                reservation_pb2.GetSeatAvailabilityRequest(screening_id=s.screening_id), metadata=customer, timeout=5
            ),
            "the reservation replica never learned of the seeded screening",
        )
        reserved = await reservations.CreateReservation(
            reservation_pb2.CreateReservationRequest(
                screening_id=s.screening_id,
                seats=["A1", "A2"],
                request_id=str(uuid.uuid4()),
                card=Card(number=APPROVE, expiry_month=12, expiry_year=2035, cvc="123"),
            ),
            metadata=customer,
            timeout=30,
        )
        s.reservation_id, s.payment_id = reserved.reservation.id, reserved.reservation.payment_id

        reviews = review_pb2_grpc.ReviewServiceStub(channels["review"])
        review_request = review_pb2.CreateReviewRequest(
            movie_id=s.movie_id, review=review_pb2.Review(rating=4, text="Moving."), request_id=str(uuid.uuid4())
        )
        # NOT_FOUND until review's replica of the catalog has the movie's MovieRegistered
        posted = await _eventually(
            lambda: reviews.CreateReview(review_request, metadata=customer, timeout=30),
            "the review service's replica of the catalog never learned of the seeded movie",
        )
        s.review_id = posted.review.id

        notifications = notification_pb2_grpc.NotificationServiceStub(channels["notification"])

        async def first_notification() -> str:
            listed = await notifications.ListNotifications(
                notification_pb2.ListNotificationsRequest(), metadata=customer, timeout=5
            )
            if not listed.notifications:
                raise LookupError("no notification yet")
            return str(listed.notifications[0].id)

        s.notification_id = await _eventually(first_notification, "the seeded reservation was never notified")
    finally:
        for channel in channels.values():
            await channel.close(None)
    return s


async def _eventually(probe: Any, failure: str, within_s: float = 30.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await probe()
        except (grpc.aio.AioRpcError, LookupError):
            if time.monotonic() > deadline:
                raise AssertionError(failure) from None
        await asyncio.sleep(0.1)


def log_entries(lines: list[str]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Each log line with its JSON object (None for a line that is not one)."""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            yield line, None
            continue
        yield line, entry if isinstance(entry, dict) else None
