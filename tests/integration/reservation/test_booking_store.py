"""The PostgreSQL adapters of booking on a real database: the seat guarantee at the database
level, the unit of work, the outbox envelopes, the replica's version guard, migrations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.reservation.v1 import events_pb2
from services.kit import pg
from services.kit.actor import Actor
from services.kit.errors import InvalidArgument
from services.kit.events import envelope as env
from services.reservation.adapters.postgres import (
    MIGRATIONS,
    PgUnitOfWork,
    decode_page_token,
    encode_page_token,
)
from services.reservation.domain.errors import SeatsTaken
from services.reservation.domain.reservation import Reservation, ReservationState
from services.reservation.domain.screening import Screening
from services.reservation.domain.values import Money, SeatLabel, SeatMap

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture
async def pool(pg_database: str) -> AsyncIterator[asyncpg.Pool]:
    assert await pg.migrate(pg_database, MIGRATIONS) == [m.version for m in pg.load_migrations(MIGRATIONS)]
    assert await pg.migrate(pg_database, MIGRATIONS) == []  # idempotent
    pool = await pg.create_pool(pg_database, min_size=1, max_size=6)
    yield pool
    await pool.close()


def a_screening(version: int = 1) -> Screening:
    return Screening(
        id=str(uuid.uuid4()),
        movie_id="movie-1",
        movie_title="Metropolis",
        hall="Hall 1",
        starts_at=NOW + timedelta(days=1),
        seat_map=SeatMap.of(5, 10, blocked=["B5"]),
        price=Money(1200, "EUR"),
        version=version,
    )


def a_reservation(screening: Screening, seats: list[str], customer: str = "c1") -> Reservation:
    return Reservation.open(
        reservation_id=str(uuid.uuid4()),
        customer_id=customer,
        screening=screening,
        seats=[SeatLabel.parse(s) for s in seats],
        request_id=str(uuid.uuid4()),
        at=datetime.now(UTC),
        customer_email="c1@example.com",
    )


async def with_screening(pool: asyncpg.Pool) -> Screening:
    screening = a_screening()
    async with PgUnitOfWork(pool) as uow:
        await uow.screenings.upsert(screening)
        await uow.commit()
    return screening


async def test_two_concurrent_claims_of_one_seat_one_wins(pool: asyncpg.Pool) -> None:
    screening = await with_screening(pool)
    first, second = a_reservation(screening, ["A1", "A2"]), a_reservation(screening, ["A2", "A3"], "c2")
    async with PgUnitOfWork(pool) as uow1:
        await uow1.reservations.add(first)
        await uow1.claims.claim(screening.id, first.seats, first.id)

        async def second_claim() -> None:
            async with PgUnitOfWork(pool) as uow2:
                await uow2.reservations.add(second)
                await uow2.claims.claim(screening.id, second.seats, second.id)
                await uow2.commit()

        racing = asyncio.create_task(second_claim())
        await asyncio.sleep(0.3)
        assert not racing.done()  # waits on the first, uncommitted claim of A2
        await uow1.commit()
    with pytest.raises(SeatsTaken) as taken:
        await racing
    assert taken.value.seats == (SeatLabel("A", 2),)
    async with PgUnitOfWork(pool) as uow:
        assert await uow.claims.held_seats(screening.id) == {SeatLabel("A", 1), SeatLabel("A", 2)}
        assert await uow.reservations.get(second.id) is None  # rolled back with its claim


async def test_a_claim_rolled_back_leaves_the_seat_to_the_other(pool: asyncpg.Pool) -> None:
    screening = await with_screening(pool)
    first, second = a_reservation(screening, ["C1"]), a_reservation(screening, ["C1"], "c2")
    async with PgUnitOfWork(pool) as uow1:
        await uow1.reservations.add(first)
        await uow1.claims.claim(screening.id, first.seats, first.id)

        async def second_claim() -> None:
            async with PgUnitOfWork(pool) as uow2:
                await uow2.reservations.add(second)
                await uow2.claims.claim(screening.id, second.seats, second.id)
                await uow2.commit()

        racing = asyncio.create_task(second_claim())
        await asyncio.sleep(0.3)
        # leaving without commit: rollback
    await racing
    async with PgUnitOfWork(pool) as uow:
        assert await uow.claims.held_seats(screening.id) == {SeatLabel("C", 1)}
        claimed = await uow.reservations.get(second.id)
        assert claimed is not None and claimed.state is ReservationState.PENDING


async def test_the_database_itself_refuses_a_second_holder(pool: asyncpg.Pool) -> None:
    """Whatever the code above it does, the table admits one holder per (screening, seat)."""
    screening = await with_screening(pool)
    first, second = a_reservation(screening, ["D1"]), a_reservation(screening, ["D2"], "c2")
    async with PgUnitOfWork(pool) as uow:
        await uow.reservations.add(first)
        await uow.reservations.add(second)
        await uow.claims.claim(screening.id, first.seats, first.id)
        await uow.commit()
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO seat_claims (screening_id, seat, reservation_id) VALUES ($1, 'D1', $2)",
            screening.id,
            uuid.UUID(second.id),
        )
    # Released, the seat can be held again.
    async with PgUnitOfWork(pool) as uow:
        await uow.claims.release(first.id)
        await uow.claims.claim(screening.id, [SeatLabel("D", 1)], second.id)
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        assert await uow.claims.held_seats(screening.id) == {SeatLabel("D", 1)}


async def test_duplicate_request_and_row_lock(pool: asyncpg.Pool) -> None:
    from services.reservation.service_layer.ports import DuplicateRequest

    screening = await with_screening(pool)
    first = a_reservation(screening, ["E1"])
    async with PgUnitOfWork(pool) as uow:
        await uow.reservations.add(first)
        await uow.commit()
    twin = a_reservation(screening, ["E2"])
    twin.request_id = first.request_id
    async with PgUnitOfWork(pool) as uow:
        with pytest.raises(DuplicateRequest):
            await uow.reservations.add(twin)

    # lock=True serializes settlements of one reservation.
    async with PgUnitOfWork(pool) as uow1:
        locked = await uow1.reservations.get(first.id, lock=True)
        assert locked is not None

        async def second_reader() -> Reservation | None:
            async with PgUnitOfWork(pool) as uow2:
                return await uow2.reservations.get(first.id, lock=True)

        waiting = asyncio.create_task(second_reader())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        locked.confirm("pay-1", datetime.now(UTC))
        await uow1.commit()
    after = await waiting
    assert after is not None and after.state is ReservationState.CONFIRMED and after.version == 1


async def test_outbox_envelopes_carry_the_reservation_version_in_order(pool: asyncpg.Pool) -> None:
    screening = await with_screening(pool)
    reservation = a_reservation(screening, ["A5", "A4"])
    async with PgUnitOfWork(pool) as uow:
        await uow.reservations.add(reservation)
        await uow.claims.claim(screening.id, reservation.seats, reservation.id)
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        loaded = await uow.reservations.get(reservation.id, lock=True)
        assert loaded is not None
        loaded.confirm("pay-1", datetime.now(UTC))
        loaded.cancel(Actor.customer("c1"), "changed my mind", datetime.now(UTC))  # two transitions, one transaction
        await uow.claims.release(loaded.id)
        await uow.commit()
    rows = await pool.fetch("SELECT event_type, aggregate_id, envelope FROM outbox ORDER BY position")
    envelopes = [EventEnvelope.FromString(row["envelope"]) for row in rows]
    assert [e.type for e in envelopes] == [
        "cinema.reservation.v1.ReservationConfirmed",
        "cinema.reservation.v1.ReservationCancelled",
    ]
    assert [e.aggregate_version for e in envelopes] == [1, 2]
    assert all(e.subject == e.aggregate_id == reservation.id for e in envelopes)
    confirmed = env.unwrap(envelopes[0])
    assert isinstance(confirmed, events_pb2.ReservationConfirmed)
    assert list(confirmed.seats) == ["A4", "A5"] and confirmed.amount.minor_units == 2400
    assert confirmed.start_time.ToDatetime(tzinfo=UTC) == screening.starts_at
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.reservations.get(reservation.id)
        assert stored is not None and stored.state is ReservationState.CANCELLED and stored.version == 2
        assert await uow.claims.held_seats(screening.id) == frozenset()


async def test_replica_upsert_never_goes_back_a_version(pool: asyncpg.Pool) -> None:
    screening = await with_screening(pool)
    newer = screening.rescheduled("Hall 9", screening.starts_at, 3)
    older = screening.rescheduled("Hall 2", screening.starts_at, 2)
    async with PgUnitOfWork(pool) as uow:
        await uow.screenings.upsert(newer)
        await uow.screenings.upsert(older)  # a concurrent consumer's late write
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.screenings.get(screening.id)
    assert stored is not None and stored.hall == "Hall 9" and stored.version == 3
    assert stored.seat_map == screening.seat_map


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    reservation_id = str(uuid.uuid4())
    token = encode_page_token(NOW, reservation_id)
    assert decode_page_token(token) == (NOW, uuid.UUID(reservation_id))
    for garbage in ("x", "bm90LWpzb24", encode_page_token(NOW, reservation_id)[:-3], "W10"):
        with pytest.raises(InvalidArgument) as invalid:
            decode_page_token(garbage)
        assert invalid.value.violations[0].field == "page_token"


async def test_catalog_events_are_handled_once_with_the_inbox_in_the_same_transaction(pool: asyncpg.Pool) -> None:
    from cinema.common.v1.money_pb2 import Money as MoneyProto
    from cinema.common.v1.seat_pb2 import SeatMap as SeatMapProto
    from cinema.movie.v1 import events_pb2 as movie_events
    from services.reservation.adapters.payment import GrpcPaymentGateway, TokenFile
    from services.reservation.adapters.postgres import PgUnitOfWorkFactory
    from services.reservation.bootstrap import UtcClock
    from services.reservation.entrypoints.catalog_consumer import CatalogEventHandler
    from services.reservation.service_layer.catalog import ScreeningNotYetKnown
    from services.reservation.service_layer.dependencies import BookingDependencies
    from tests.integration.reservation.helpers import stamp

    payments = GrpcPaymentGateway("127.0.0.1:1", TokenFile(""))  # never called by catalog handlers
    handler = CatalogEventHandler(pool, BookingDependencies(PgUnitOfWorkFactory(pool), payments, UtcClock()))
    screening_id = str(uuid.uuid4())
    try:
        # Rescheduled before scheduled: the handler fails, and its inbox record goes with it.
        early = movie_events.ScreeningRescheduled(screening_id=screening_id, hall="Hall 2", start_time=stamp(NOW))
        early_envelope = env.wrap(
            early, source="//cinema/movie", subject=screening_id, aggregate_id=screening_id, aggregate_version=2
        )
        with pytest.raises(ScreeningNotYetKnown):
            await handler(early_envelope, early)
        assert await pool.fetchval("SELECT count(*) FROM inbox") == 0

        scheduled = movie_events.ScreeningScheduled(
            screening_id=screening_id,
            movie_id="movie-9",
            movie_title="Nosferatu",
            hall="Hall 1",
            start_time=stamp(NOW + timedelta(days=1)),
            seat_map=SeatMapProto(rows=2, seats_per_row=3),
            price=MoneyProto(minor_units=900, currency_code="EUR"),
        )
        envelope = env.wrap(
            scheduled, source="//cinema/movie", subject=screening_id, aggregate_id=screening_id, aggregate_version=1
        )
        await handler(envelope, scheduled)
        await handler(envelope, scheduled)  # redelivered: recorded once, applied once
        assert await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", uuid.UUID(envelope.id)) == 1
        await handler(early_envelope, early)  # its redelivery now applies
        async with PgUnitOfWork(pool) as uow:
            stored = await uow.screenings.get(screening_id)
        assert stored is not None
        assert (stored.hall, stored.version, stored.movie_title) == ("Hall 2", 2, "Nosferatu")
        assert stored.seat_map.capacity == 6 and stored.price == Money(900, "EUR")
    finally:
        await payments.close()
