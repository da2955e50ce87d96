"""Two payment instances on one database, asked at once about the same reservation (the mesh
retried a call on the other instance, or two attempts crossed): one payment, one charge.

Each "instance" here is what a payment process holds — its own connection pool, its own
simulated processor, its own in-progress authorizations — over the real PostgreSQL database;
the processes themselves are in test_payment_process.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from services.kit import pg
from services.payment.adapters.clock import SystemClock
from services.payment.adapters.processor import PgProcessorLedger, SimulatedCardProcessor
from services.payment.adapters.store import PgUnitOfWork, migrate
from services.payment.domain.payment import PaymentState
from services.payment.domain.processor import CARD_APPROVED, CARD_INSUFFICIENT_FUNDS
from services.payment.domain.values import Money
from services.payment.service_layer.payments import (
    Authorizations,
    AuthorizePayment,
    CardDetails,
    PaymentDependencies,
)
from services.payment.service_layer.ports import UnitOfWork
from tests.integration.payment.helpers import NEXT_YEAR
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration


@dataclass
class Instance:
    pool: asyncpg.Pool
    processor: SimulatedCardProcessor
    deps: PaymentDependencies
    authorizations: Authorizations


async def instance(database: str, *, shared_ledger: bool) -> Instance:
    pool = await pg.create_pool(database, min_size=1, max_size=4)
    # Long enough that both instances are at the processor at once.
    processor = SimulatedCardProcessor(latency_ms=200)
    if shared_ledger:
        processor.use_ledger(PgProcessorLedger(pool))

    def unit_of_work() -> UnitOfWork:
        return PgUnitOfWork(pool)

    deps = PaymentDependencies(uow=unit_of_work, processor=processor, clock=SystemClock())
    return Instance(pool, processor, deps, Authorizations())


@pytest.fixture(scope="module")
async def database(postgres_server: Server) -> str:
    database = await create_database(postgres_server, "payment_two_instances")
    await migrate(database)
    return database


@pytest.fixture
async def two(database: str) -> AsyncIterator[tuple[Instance, Instance]]:
    a, b = await instance(database, shared_ledger=True), await instance(database, shared_ledger=True)
    yield a, b
    await a.pool.close()
    await b.pool.close()


def command(reservation_id: str, number: str = CARD_APPROVED) -> AuthorizePayment:
    return AuthorizePayment(
        reservation_id=reservation_id,
        customer_id="customer-1",
        amount=Money(2400, "EUR"),
        card=CardDetails(number, 12, NEXT_YEAR, "123"),
        customer_email="ada@example.com",
    )


async def stored(pool: asyncpg.Pool, reservation_id: str) -> tuple[int, int]:
    """(payments, outbox events) stored for the reservation."""
    key = uuid.UUID(reservation_id)
    payments = await pool.fetchval("SELECT count(*) FROM payments WHERE reservation_id = $1", key)
    events = await pool.fetchval(
        "SELECT count(*) FROM outbox o JOIN payments p ON o.aggregate_id = p.id::text WHERE p.reservation_id = $1",
        key,
    )
    return payments, events


async def test_two_instances_authorizing_one_reservation_at_once_make_one_payment_and_one_charge(
    two: tuple[Instance, Instance],
) -> None:
    a, b = two
    reservations = [str(uuid.uuid4()) for _ in range(20)]

    answers = await asyncio.gather(
        *(
            i.authorizations.authorize(command(reservation_id), i.deps)
            for reservation_id in reservations
            for i in (a, b)
        )
    )

    for index, reservation_id in enumerate(reservations):
        on_a, on_b = answers[2 * index], answers[2 * index + 1]
        assert on_a.id == on_b.id and on_a.state is on_b.state is PaymentState.APPROVED
        assert a.processor.charges[reservation_id] + b.processor.charges[reservation_id] == 1
        assert await stored(a.pool, reservation_id) == (1, 1)  # one payment, one PaymentAuthorized


async def test_a_decline_is_the_same_decline_on_both_instances(two: tuple[Instance, Instance]) -> None:
    a, b = two
    reservation_id = str(uuid.uuid4())

    on_a, on_b = await asyncio.gather(
        a.authorizations.authorize(command(reservation_id, CARD_INSUFFICIENT_FUNDS), a.deps),
        b.authorizations.authorize(command(reservation_id, CARD_INSUFFICIENT_FUNDS), b.deps),
    )

    assert on_a.id == on_b.id and on_a.state is PaymentState.DECLINED
    assert on_a.decline_reason == on_b.decline_reason == "insufficient_funds"
    assert a.processor.charges[reservation_id] + b.processor.charges[reservation_id] == 0


async def test_without_the_shared_ledger_two_instances_would_charge_twice(database: str) -> None:
    """What the ledger is for: each process's own memory of answers cannot see the other's."""
    a, b = await instance(database, shared_ledger=False), await instance(database, shared_ledger=False)
    try:
        reservation_id = str(uuid.uuid4())
        on_a, on_b = await asyncio.gather(
            a.authorizations.authorize(command(reservation_id), a.deps),
            b.authorizations.authorize(command(reservation_id), b.deps),
        )
        assert on_a.id == on_b.id  # still one payment (the unique reservation id) ...
        assert await stored(a.pool, reservation_id) == (1, 1)
        # ... but the card was charged by both processors.
        assert a.processor.charges[reservation_id] + b.processor.charges[reservation_id] == 2
    finally:
        await a.pool.close()
        await b.pool.close()
