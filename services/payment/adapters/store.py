"""The payment store on PostgreSQL (asyncpg): migrations, the repository and the unit of work.

One `PgUnitOfWork` is one transaction on one pooled connection. Given a connection that is
already in a transaction (the event consumer's, which holds the inbox record), it runs as a
savepoint inside it instead, so the inbox record and the refund commit or vanish together.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from services.kit import pg
from services.kit.errors import Unavailable
from services.payment.adapters import metrics as payment_metrics
from services.payment.adapters.outbox import SOURCE, PgOutbox
from services.payment.domain.payment import Payment, PaymentState
from services.payment.domain.values import Money
from services.payment.service_layer.ports import DuplicatePayment, PaymentRepository, UnitOfWork

MIGRATIONS = Path(__file__).with_name("migrations")
_ONE_PER_RESERVATION = "payments_one_per_reservation"

# Whole statements, written out: no SQL is ever assembled from pieces.
_INSERT = """
INSERT INTO payments (id, reservation_id, customer_id, customer_email, amount_minor, currency, card_last4,
                      card_brand, state, decline_reason, refunded_at, version, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""
_SELECT_BY_ID = """
SELECT id, reservation_id, customer_id, customer_email, amount_minor, currency, card_last4, card_brand,
       state, decline_reason, refunded_at, version, created_at
FROM payments WHERE id = $1
"""
_SELECT_BY_RESERVATION = """
SELECT id, reservation_id, customer_id, customer_email, amount_minor, currency, card_last4, card_brand,
       state, decline_reason, refunded_at, version, created_at
FROM payments WHERE reservation_id = $1
"""
_SELECT_BY_RESERVATION_FOR_UPDATE = _SELECT_BY_RESERVATION + "FOR UPDATE\n"
_UPDATE = """
UPDATE payments SET state = $3, decline_reason = $4, refunded_at = $5, version = $6, updated_at = now()
WHERE id = $1 AND version = $2
"""


async def migrate(dsn: str) -> list[int]:
    """Apply the pending payment migrations (idempotent); returns the versions applied now."""
    return await pg.migrate(dsn, MIGRATIONS)


# The store is down or unreachable, not wrong: the caller may retry.
STORE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # e.g. terminated by an administrator, server shutting down
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # seen on a pooled connection whose backend was terminated
)


@contextlib.contextmanager
def store_outage_is_unavailable(retry_after_s: float = 1.0) -> Iterator[None]:
    """Turn a lost or refused database connection into Unavailable (a retry may work), not INTERNAL.

    Safe for authorization: an approval the processor gave but the store did not record is
    given again, uncharged, on the retry (the processor is idempotent per reservation).
    """
    try:
        yield
    except STORE_DOWN as error:
        raise Unavailable(
            "the payment store is unavailable", retry_after_s=retry_after_s, reason="STORE_UNAVAILABLE"
        ) from error


class StalePayment(RuntimeError):
    """The payment changed under us (its version moved): the transaction is given up; a retry reloads it."""


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None  # not an id this store could hold: no such payment


def _payment_of(row: asyncpg.Record) -> Payment:
    return Payment(
        id=str(row["id"]),
        reservation_id=str(row["reservation_id"]),
        customer_id=row["customer_id"],
        customer_email=row["customer_email"],
        amount=Money(row["amount_minor"], row["currency"]),
        card_last4=row["card_last4"],
        card_brand=row["card_brand"],
        state=PaymentState(row["state"]),
        decline_reason=row["decline_reason"],
        refunded_at=row["refunded_at"],
        version=row["version"],
        created_at=row["created_at"],
    )


class PgPaymentRepository(PaymentRepository):
    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__()
        self._conn = conn

    async def _add(self, payment: Payment) -> None:
        try:
            # A savepoint: the unique violation must not abort an outer transaction (the consumer's).
            async with self._conn.transaction():
                await self._conn.execute(
                    _INSERT,
                    payment.id,
                    payment.reservation_id,
                    payment.customer_id,
                    payment.customer_email,
                    payment.amount.amount_minor,
                    payment.amount.currency,
                    payment.card_last4,
                    payment.card_brand,
                    payment.state.value,
                    payment.decline_reason,
                    payment.refunded_at,
                    payment.version,
                    payment.created_at,
                )
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == _ONE_PER_RESERVATION:
                raise DuplicatePayment(payment.reservation_id) from None
            raise

    async def _get(self, payment_id: str) -> Payment | None:
        key = _uuid_or_none(payment_id)
        if key is None:
            return None
        row = await self._conn.fetchrow(_SELECT_BY_ID, key)
        return None if row is None else _payment_of(row)

    async def _get_by_reservation(self, reservation_id: str, lock: bool) -> Payment | None:
        key = _uuid_or_none(reservation_id)
        if key is None:
            return None
        row = await self._conn.fetchrow(_SELECT_BY_RESERVATION_FOR_UPDATE if lock else _SELECT_BY_RESERVATION, key)
        return None if row is None else _payment_of(row)

    async def _update(self, payment: Payment, expected_version: int) -> None:
        status = await self._conn.execute(
            _UPDATE,
            payment.id,
            expected_version,
            payment.state.value,
            payment.decline_reason,
            payment.refunded_at,
            payment.version,
        )
        if status != "UPDATE 1":
            raise StalePayment(f"payment {payment.id} is no longer at version {expected_version}")


class PgUnitOfWork(UnitOfWork):
    """A transaction on a connection from `pool`, or a savepoint on `connection` (see the module doc)."""

    def __init__(
        self,
        pool: asyncpg.Pool | None = None,
        *,
        connection: asyncpg.Connection | None = None,
        source: str = SOURCE,
    ) -> None:
        if (pool is None) == (connection is None):
            raise ValueError("give a pool or a connection, not both")
        self._pool = pool
        self._given = connection
        self._source = source
        self._conn: asyncpg.Connection | None = None
        self._tx: asyncpg.transaction.Transaction | None = None

    async def _begin(self) -> None:
        if self._given is not None:
            self._conn = self._given
        else:
            assert self._pool is not None
            try:
                self._conn = await self._pool.acquire()
            except (*STORE_DOWN, asyncpg.PostgresError) as error:
                # No connection to be had (refused, database closed to connections, too many):
                # whatever the SQLSTATE, the store is down for us, and a retry may find it up.
                raise Unavailable("the payment store is unavailable", reason="STORE_UNAVAILABLE") from error
        try:
            self._tx = self._conn.transaction()
            await self._tx.start()
        except BaseException as error:
            self._tx = None
            await self._release()
            if self._given is None and isinstance(error, (*STORE_DOWN, asyncpg.PostgresError)):
                # BEGIN on a connection fresh from the pool failed: the connection died under
                # the pool (e.g. its backend was terminated; asyncpg may then report an
                # InternalClientError). Nothing was done; a retry gets a new connection.
                raise Unavailable("the payment store is unavailable", reason="STORE_UNAVAILABLE") from error
            raise
        self.payments = PgPaymentRepository(self._conn)
        self.outbox = PgOutbox(self._conn, self.payments, self._source)

    async def _commit(self) -> None:
        assert self._tx is not None, "commit outside the unit of work"
        tx, self._tx = self._tx, None
        try:
            await tx.commit()
        finally:
            await self._release()

    def _committed(self, events: list[Any]) -> None:
        payment_metrics.count_committed(events)

    async def rollback(self) -> None:
        if self._tx is None:
            return  # committed already, or never begun
        tx, self._tx = self._tx, None
        try:
            await tx.rollback()
        finally:
            await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._given is None:
            assert self._pool is not None
            await self._pool.release(conn)
