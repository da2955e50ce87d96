"""Who caused it, on the real services: every ReservationCancelled (and ReservationFailed, and
the PaymentRefunded that follows) says who, taken from the caller's token, stored with the
reservation and published on the real streams; reservations cancelled before attribution get it
from the migration.

Real reservation and payment services over gRPC, PostgreSQL and NATS (the fixtures of this
folder's conftest); catalog events published as the movie service publishes them.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext

from cinema.common.v1 import actor_pb2
from cinema.movie.v1 import events_pb2 as movie_events
from cinema.payment.v1 import events_pb2 as payment_events
from cinema.reservation.v1 import events_pb2 as reservation_events
from cinema.reservation.v1 import reservation_pb2 as pb
from services.kit import pg
from services.kit.actor import Actor
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.domain.processor import CARD_INSUFFICIENT_FUNDS
from services.reservation.adapters.postgres import MIGRATIONS, PgUnitOfWork
from tests.integration.reservation.conftest import Metadata
from tests.integration.reservation.helpers import create_request, events_of, publish, schedule
from tests.integration.reservation.test_booking_store import a_reservation, with_screening
from tests.support.polling import eventually
from tests.support.servers import Server, create_database

if TYPE_CHECKING:
    from cinema.reservation.v1.reservation_pb2_grpc import ReservationServiceAsyncStub as Stub

pytestmark = pytest.mark.integration

CUSTOMER = actor_pb2.ACTOR_KIND_CUSTOMER
MANAGER = actor_pb2.ACTOR_KIND_MANAGER
SYSTEM = actor_pb2.ACTOR_KIND_SYSTEM


def token(issuer: LocalTokenIssuer, role: str, subject: str | None = None) -> tuple[str, Metadata]:
    subject = subject or f"{role}-{uuid.uuid4().hex[:8]}"
    minted = issuer.mint(subject, roles={role}, extra_claims={"email": f"{subject}@example.com"}, ttl_s=600)
    return subject, issuer.metadata(minted)


async def bookable(js: JetStreamContext, stub: Stub) -> str:
    screening_id = await schedule(js)

    async def known() -> bool:
        try:
            await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    await eventually(known)
    return screening_id


async def cancellation_of(js: JetStreamContext, reservation_id: str) -> reservation_events.ReservationCancelled:
    [(_envelope, event)] = await events_of(js, "cinema.reservation.cancelled", reservation_id)
    assert isinstance(event, reservation_events.ReservationCancelled)
    return event


async def refund_of(js: JetStreamContext, made: pb.Reservation) -> payment_events.PaymentRefunded:
    # Payment events are about the payment (aggregate); their subject is the reservation.
    [(envelope, event)] = await events_of(js, "cinema.payment.refunded", made.payment_id, within_s=20)
    assert isinstance(event, payment_events.PaymentRefunded) and envelope.subject == made.id
    return event


async def stored_attribution(pool: asyncpg.Pool, reservation_id: str) -> tuple[str, str, str]:
    row = await pool.fetchrow(
        "SELECT cancelled_by, cancelled_by_kind, cancel_cause FROM reservations WHERE id = $1",
        uuid.UUID(reservation_id),
    )
    assert row is not None
    return row["cancelled_by"], row["cancelled_by_kind"], row["cancel_cause"]


async def test_a_customer_cancelling_their_own_reservation_is_the_customer(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await bookable(js, stub)
    subject, me = token(issuer, "customer")
    made = (await stub.CreateReservation(create_request(screening_id, ["A1"]), metadata=me)).reservation
    await stub.CancelReservation(
        pb.CancelReservationRequest(reservation_id=made.id, reason="plans changed"), metadata=me
    )

    event = await cancellation_of(js, made.id)
    assert (event.cancelled_by.kind, event.cancelled_by.id, event.cancelled_by.cause) == (CUSTOMER, subject, "")
    assert event.reason == "plans changed"  # their own words, passed on as theirs
    assert await stored_attribution(pool, made.id) == (subject, "CUSTOMER", "")
    refund = await refund_of(js, made)  # payment passes who cancelled on to the refund
    assert (refund.cancelled_by.kind, refund.cancelled_by.id) == (CUSTOMER, subject)


async def test_a_manager_cancelling_someone_elses_reservation_is_the_manager(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await bookable(js, stub)
    _customer, owner = token(issuer, "customer")
    manager, manager_token = token(issuer, "manager")
    made = (await stub.CreateReservation(create_request(screening_id, ["A2"]), metadata=owner)).reservation
    await stub.CancelReservation(
        pb.CancelReservationRequest(reservation_id=made.id, reason="hall flooded"), metadata=manager_token
    )

    event = await cancellation_of(js, made.id)
    assert (event.cancelled_by.kind, event.cancelled_by.id, event.reason) == (MANAGER, manager, "hall flooded")
    assert await stored_attribution(pool, made.id) == (manager, "MANAGER", "")
    refund = await refund_of(js, made)
    assert (refund.cancelled_by.kind, refund.cancelled_by.id) == (MANAGER, manager)


async def test_a_managers_own_booking_carries_their_email_and_cancelling_it_is_as_its_customer(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await bookable(js, stub)
    manager, manager_token = token(issuer, "manager")
    made = (await stub.CreateReservation(create_request(screening_id, ["A3"]), metadata=manager_token)).reservation
    [(_envelope, confirmed)] = await events_of(js, "cinema.reservation.confirmed", made.id)
    assert isinstance(confirmed, reservation_events.ReservationConfirmed)
    assert confirmed.customer_email == f"{manager}@example.com"  # the token's email claim: the notice has a recipient

    await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=made.id), metadata=manager_token)
    event = await cancellation_of(js, made.id)
    assert (event.cancelled_by.kind, event.cancelled_by.id, event.reason) == (
        CUSTOMER,
        manager,
        "CANCELLED_BY_CUSTOMER",
    )


async def test_a_screening_cancellation_is_the_system_with_its_cause_and_the_catalogs_reason(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await bookable(js, stub)
    _customer, me = token(issuer, "customer")
    made = (await stub.CreateReservation(create_request(screening_id, ["A4"]), metadata=me)).reservation
    cancelled_by_manager = actor_pb2.Actor(kind=MANAGER, id="manager-on-duty")
    await publish(
        js,
        movie_events.ScreeningCancelled(
            screening_id=screening_id, reason="projector broke", cancelled_by=cancelled_by_manager
        ),
        screening_id,
        2,
    )

    event = await cancellation_of(js, made.id)
    assert (event.cancelled_by.kind, event.cancelled_by.id, event.cancelled_by.cause) == (
        SYSTEM,
        "system",
        "SCREENING_CANCELLED",
    )
    assert event.reason == "projector broke"
    assert await stored_attribution(pool, made.id) == ("system", "SYSTEM", "SCREENING_CANCELLED")
    refund = await refund_of(js, made)
    assert (refund.cancelled_by.kind, refund.cancelled_by.cause) == (SYSTEM, "SCREENING_CANCELLED")


async def test_a_declined_payment_fails_the_reservation_by_the_system_with_the_decline_reason(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer
) -> None:
    screening_id = await bookable(js, stub)
    _customer, me = token(issuer, "customer")
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CreateReservation(create_request(screening_id, ["A5"], number=CARD_INSUFFICIENT_FUNDS), metadata=me)
    listed = await stub.ListReservations(pb.ListReservationsRequest(), metadata=me)
    [failed] = [r for r in listed.reservations if r.state == pb.RESERVATION_STATE_FAILED]

    [(_envelope, event)] = await events_of(js, "cinema.reservation.failed", failed.id)
    assert isinstance(event, reservation_events.ReservationFailed)
    assert (event.failed_by.kind, event.failed_by.cause) == (SYSTEM, event.reason)
    assert event.reason  # the processor's decline reason


async def test_reservations_cancelled_before_attribution_get_it_from_the_migration(postgres_server: Server) -> None:
    database = await create_database(postgres_server, "reservation_attribution")
    with tempfile.TemporaryDirectory() as folder:  # the schema as it was: only the first migration
        before = Path(folder)
        (before / "001_booking.sql").write_text((MIGRATIONS / "001_booking.sql").read_text())
        assert await pg.migrate(database, before) == [1]
    conn = await asyncpg.connect(database)
    try:
        ids = {who: uuid.uuid4() for who in ("customer", "manager", "system", "standing")}
        cancelled_by = {"customer": "alice", "manager": "manager-1", "system": "system", "standing": None}
        for who, reservation_id in ids.items():
            await conn.execute(
                """
                INSERT INTO reservations (id, customer_id, request_id, screening_id, movie_id, movie_title, hall,
                    starts_at, seats, amount_minor, currency, state, cancelled_by, cancel_reason, created_at)
                VALUES ($1, 'alice', $2, 's1', 'm1', 'Metropolis', 'Hall 1', now(), '{A1}', 1200, 'EUR', $3, $4,
                    $5, now())
                """,
                reservation_id,
                who,
                "CONFIRMED" if who == "standing" else "CANCELLED",
                cancelled_by[who],
                None if who == "standing" else "some reason",
            )

        assert 2 in await pg.migrate(conn, MIGRATIONS)

        rows = {
            row["id"]: (row["cancelled_by_kind"], row["cancel_cause"])
            for row in await conn.fetch("SELECT id, cancelled_by_kind, cancel_cause FROM reservations")
        }
    finally:
        await conn.close()
    assert rows == {
        ids["customer"]: ("CUSTOMER", ""),
        ids["manager"]: ("MANAGER", ""),
        ids["system"]: ("SYSTEM", "SCREENING_CANCELLED"),  # before attribution the system cancelled only for that
        ids["standing"]: (None, ""),
    }


async def test_the_store_keeps_who_cancelled_and_reads_rows_an_older_instance_wrote(postgres_server: Server) -> None:
    database = await create_database(postgres_server, "reservation_attribution_store")
    await pg.migrate(database, MIGRATIONS)
    pool = await pg.create_pool(database, min_size=1, max_size=2)
    try:
        screening = await with_screening(pool)
        reservation = a_reservation(screening, ["A1"])
        async with PgUnitOfWork(pool) as uow:
            await uow.reservations.add(reservation)
            await uow.commit()
        async with PgUnitOfWork(pool) as uow:
            loaded = await uow.reservations.get(reservation.id, lock=True)
            assert loaded is not None
            loaded.cancel(Actor.manager("manager-1"), "hall flooded", datetime.now(UTC))
            await uow.commit()

        async def read_back() -> Actor | None:
            async with PgUnitOfWork(pool) as uow:
                stored = await uow.reservations.get(reservation.id)
            assert stored is not None
            return stored.cancelled_by

        assert await read_back() == Actor.manager("manager-1")
        # During a rolling upgrade an instance from before migration 002 writes only the id.
        for written, expected in (
            ("c1", Actor.customer("c1")),  # the reservation's own customer
            ("manager-2", Actor.manager("manager-2")),
            ("system", Actor.system("SCREENING_CANCELLED")),
        ):
            await pool.execute(
                "UPDATE reservations SET cancelled_by = $2, cancelled_by_kind = NULL, cancel_cause = '' WHERE id = $1",
                uuid.UUID(reservation.id),
                written,
            )
            assert await read_back() == expected
    finally:
        await pool.close()
