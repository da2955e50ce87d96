"""The booking store on PostgreSQL (asyncpg): repositories, seat claims and the unit of work.

Implements services/reservation/service_layer/ports.py. One `PgUnitOfWork` is one
transaction on one pooled connection; everything it hands out (repositories, claims, outbox)
writes through that connection. Double booking is prevented by the primary key of
`seat_claims` (see migrations/001_booking.sql), not by any read made before the claim.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from services.kit.actor import SYSTEM_ID, Actor, ActorKind
from services.kit.errors import InvalidArgument, Unavailable
from services.reservation.adapters import metrics as booking_metrics
from services.reservation.adapters.outbox import PgOutbox
from services.reservation.domain.errors import SeatsTaken
from services.reservation.domain.reservation import SCREENING_CANCELLED, Reservation, ReservationState
from services.reservation.domain.screening import MovieTitle, Screening, ScreeningDetails, ScreeningStatus
from services.reservation.domain.values import Money, SeatLabel, SeatMap
from services.reservation.service_layer.ports import (
    DuplicateRequest,
    ReservationPage,
    ReservationRepository,
    UnitOfWork,
)

log = logging.getLogger(__name__)

# The store is down or unreachable (restarting, shutting down, connection cut), not wrong: the
# caller may retry with the same request id. Without this such a request ended INTERNAL.
STORE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.OperatorInterventionError,  # terminated by an administrator, e.g. a fast shutdown
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@contextlib.contextmanager
def store_outage_is_unavailable(retry_after_s: float) -> Iterator[None]:
    """Turn a lost or refused database connection into Unavailable with a retry hint."""
    try:
        yield
    except STORE_DOWN as error:
        raise Unavailable(
            "the reservation store is unavailable; retry with the same request_id",
            retry_after_s=retry_after_s,
            reason="STORE_UNAVAILABLE",
        ) from error


MIGRATIONS = Path(__file__).with_name("migrations")

# The constraint whose violation means "this customer already used this request_id".
_REQUEST_ONCE = "reservations_request_once"

# Reservations joined with the replica, so that a reservation shows its screening as the
# catalog describes it now (after a reschedule or a retitle); the stored copy is the fallback
# when the replica has only a tombstone.
_SELECT_RESERVATION = """
SELECT r.*, s.movie_id AS s_movie_id, s.movie_title AS s_movie_title, s.hall AS s_hall,
       s.starts_at AS s_starts_at
FROM reservations r
LEFT JOIN screenings s ON s.id = r.screening_id AND s.movie_id <> ''
"""


def _as_uuid(value: str) -> uuid.UUID | None:
    """The reservation id as a UUID, or None when it cannot be one (so no such reservation)."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def _cancelled_by(row: asyncpg.Record) -> Actor | None:
    canceller = row["cancelled_by"]
    if canceller is None:
        return None
    if row["cancelled_by_kind"] is not None:
        return Actor(ActorKind(row["cancelled_by_kind"]), canceller, row["cancel_cause"])
    # Written without the kind by an instance older than migration 002 (a rolling upgrade): read
    # as the migration backfills it.
    if canceller == SYSTEM_ID:
        return Actor.system(SCREENING_CANCELLED)
    return Actor.customer(canceller) if canceller == row["customer_id"] else Actor.manager(canceller)


def _reservation_from(row: asyncpg.Record) -> Reservation:
    if row["s_movie_id"] is not None:
        details = ScreeningDetails(row["s_movie_id"], row["s_movie_title"], row["s_hall"], row["s_starts_at"])
    else:
        details = ScreeningDetails(row["movie_id"], row["movie_title"], row["hall"], row["starts_at"])
    return Reservation(
        id=str(row["id"]),
        customer_id=row["customer_id"],
        screening_id=row["screening_id"],
        screening=details,
        seats=tuple(SeatLabel.parse(seat) for seat in row["seats"]),
        amount=Money(row["amount_minor"], row["currency"]),
        request_id=row["request_id"],
        created_at=row["created_at"],
        customer_email=row["customer_email"],
        state=ReservationState(row["state"]),
        payment_id=row["payment_id"],
        failure_reason=row["failure_reason"],
        cancelled_by=_cancelled_by(row),
        cancel_reason=row["cancel_reason"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def _canceller_id(reservation: Reservation) -> str | None:
    """`cancelled_by`: the canceller's id, as before attribution."""
    return None if reservation.cancelled_by is None else reservation.cancelled_by.id


def _cancelled_by_kind_and_cause(reservation: Reservation) -> tuple[str | None, str]:
    """`cancelled_by_kind` and `cancel_cause` (migrations/002_cancellation_attribution.sql)."""
    actor = reservation.cancelled_by
    return (None, "") if actor is None else (actor.kind.value, actor.cause)


# ------------------------------------------------------------------------------ page tokens


def encode_page_token(created_at: datetime, reservation_id: str) -> str:
    """An opaque keyset token: the (created_at, id) of the last reservation of a page."""
    raw = json.dumps([created_at.isoformat(), reservation_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    """The position a token stands for; InvalidArgument on `page_token` when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_text, id_text = json.loads(raw)
        created_at = datetime.fromisoformat(created_text)
        reservation_id = uuid.UUID(id_text)
        if created_at.tzinfo is None:
            raise ValueError("naive time")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidArgument.for_field("page_token", "not a token this service issued") from None
    return created_at, reservation_id


# ------------------------------------------------------------------------------ repositories


class PgReservationRepository(ReservationRepository):
    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__()
        self._conn = conn

    def loaded_version(self, reservation_id: str) -> int:
        """The version the reservation had when this unit of work first saw it."""
        return self._loaded_version[reservation_id]

    async def _add(self, reservation: Reservation) -> None:
        details = reservation.screening
        try:
            await self._conn.execute(
                """
                INSERT INTO reservations (id, customer_id, customer_email, request_id, screening_id, movie_id,
                    movie_title, hall, starts_at, seats, amount_minor, currency, state, payment_id,
                    failure_reason, cancelled_by, cancel_reason, created_at, updated_at, version,
                    cancelled_by_kind, cancel_cause)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                    $21, $22)
                """,
                uuid.UUID(reservation.id),
                reservation.customer_id,
                reservation.customer_email,
                reservation.request_id,
                reservation.screening_id,
                details.movie_id,
                details.movie_title,
                details.hall,
                details.starts_at,
                [str(seat) for seat in reservation.seats],
                reservation.amount.amount_minor,
                reservation.amount.currency,
                reservation.state.value,
                reservation.payment_id,
                reservation.failure_reason,
                _canceller_id(reservation),
                reservation.cancel_reason,
                reservation.created_at,
                reservation.updated_at,
                reservation.version,
                *_cancelled_by_kind_and_cause(reservation),
            )
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == _REQUEST_ONCE:
                raise DuplicateRequest((reservation.customer_id, reservation.request_id)) from error
            raise

    async def _get(self, reservation_id: str, lock: bool) -> Reservation | None:
        key = _as_uuid(reservation_id)
        if key is None:
            return None
        suffix = " FOR UPDATE OF r" if lock else ""
        row = await self._conn.fetchrow(_SELECT_RESERVATION + " WHERE r.id = $1" + suffix, key)
        return None if row is None else _reservation_from(row)

    async def _get_by_request(self, customer_id: str, request_id: str) -> Reservation | None:
        row = await self._conn.fetchrow(
            _SELECT_RESERVATION + " WHERE r.customer_id = $1 AND r.request_id = $2", customer_id, request_id
        )
        return None if row is None else _reservation_from(row)

    async def _list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> ReservationPage:
        if page_token:
            created_at, after_id = decode_page_token(page_token)
            rows = await self._conn.fetch(
                _SELECT_RESERVATION + " WHERE r.customer_id = $1 AND (r.created_at, r.id) < ($2, $3)"
                " ORDER BY r.created_at DESC, r.id DESC LIMIT $4",
                customer_id,
                created_at,
                after_id,
                page_size + 1,
            )
        else:
            rows = await self._conn.fetch(
                _SELECT_RESERVATION + " WHERE r.customer_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2",
                customer_id,
                page_size + 1,
            )
        page = [_reservation_from(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        token = encode_page_token(page[-1].created_at, page[-1].id) if more and page else ""
        return ReservationPage(page, token)

    async def _list_pending_older_than(self, cutoff: datetime, limit: int) -> Sequence[Reservation]:
        rows = await self._conn.fetch(
            _SELECT_RESERVATION + " WHERE r.state = 'PENDING' AND r.created_at < $1 ORDER BY r.created_at LIMIT $2",
            cutoff,
            limit,
        )
        return [_reservation_from(row) for row in rows]

    async def _list_active_for_screening(self, screening_id: str) -> Sequence[Reservation]:
        # Locked in id order, like every other multi-row lock here, so two of these cannot deadlock.
        rows = await self._conn.fetch(
            _SELECT_RESERVATION + " WHERE r.screening_id = $1 AND r.state IN ('PENDING', 'CONFIRMED')"
            " ORDER BY r.id FOR UPDATE OF r",
            screening_id,
        )
        return [_reservation_from(row) for row in rows]

    async def _update(self, reservation: Reservation, expected_version: int) -> None:
        status = await self._conn.execute(
            """
            UPDATE reservations SET state = $3, payment_id = $4, failure_reason = $5, cancelled_by = $6,
                cancel_reason = $7, updated_at = $8, version = $9, cancelled_by_kind = $10, cancel_cause = $11
            WHERE id = $1 AND version = $2
            """,
            uuid.UUID(reservation.id),
            expected_version,
            reservation.state.value,
            reservation.payment_id,
            reservation.failure_reason,
            _canceller_id(reservation),
            reservation.cancel_reason,
            reservation.updated_at,
            reservation.version,
            *_cancelled_by_kind_and_cause(reservation),
        )
        if status != "UPDATE 1":
            # Changed by someone else since it was read without a lock: the whole unit of work
            # rolls back, and a retry reads the new state.
            raise Unavailable(f"reservation {reservation.id} changed concurrently; retry", retry_after_s=0.1)


def _screening_from(row: asyncpg.Record) -> Screening:
    return Screening(
        id=row["id"],
        movie_id=row["movie_id"],
        movie_title=row["movie_title"],
        hall=row["hall"],
        starts_at=row["starts_at"],
        seat_map=SeatMap(
            row["seat_rows"],
            row["seats_per_row"],
            frozenset(SeatLabel.parse(seat) for seat in row["blocked_seats"]),
        ),
        price=Money(row["price_minor"], row["currency"]),
        version=row["version"],
        status=ScreeningStatus(row["status"]),
    )


class PgScreeningReplica:
    """The catalog replica: `screenings` and `movies` tables."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, screening_id: str) -> Screening | None:
        row = await self._conn.fetchrow("SELECT * FROM screenings WHERE id = $1", screening_id)
        return None if row is None else _screening_from(row)

    async def upsert(self, screening: Screening) -> None:
        # The version guard keeps a concurrent older event (another replica of this consumer)
        # from overwriting a newer one; `<=` lets a retitle, which keeps the version, through.
        await self._conn.execute(
            """
            INSERT INTO screenings (id, movie_id, movie_title, hall, starts_at, seat_rows, seats_per_row,
                blocked_seats, price_minor, currency, status, version)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (id) DO UPDATE SET movie_id = EXCLUDED.movie_id, movie_title = EXCLUDED.movie_title,
                hall = EXCLUDED.hall, starts_at = EXCLUDED.starts_at, seat_rows = EXCLUDED.seat_rows,
                seats_per_row = EXCLUDED.seats_per_row, blocked_seats = EXCLUDED.blocked_seats,
                price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency, status = EXCLUDED.status,
                version = EXCLUDED.version
            WHERE screenings.version <= EXCLUDED.version
            """,
            screening.id,
            screening.movie_id,
            screening.movie_title,
            screening.hall,
            screening.starts_at,
            screening.seat_map.rows,
            screening.seat_map.seats_per_row,
            sorted(str(seat) for seat in screening.seat_map.blocked),
            screening.price.amount_minor,
            screening.price.currency,
            screening.status.value,
            screening.version,
        )

    async def list_for_movie(self, movie_id: str) -> Sequence[Screening]:
        rows = await self._conn.fetch("SELECT * FROM screenings WHERE movie_id = $1 ORDER BY id", movie_id)
        return [_screening_from(row) for row in rows]

    async def get_movie(self, movie_id: str) -> MovieTitle | None:
        row = await self._conn.fetchrow("SELECT id, title, version FROM movies WHERE id = $1", movie_id)
        return None if row is None else MovieTitle(row["id"], row["title"], row["version"])

    async def upsert_movie(self, movie: MovieTitle) -> None:
        await self._conn.execute(
            """
            INSERT INTO movies (id, title, version) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, version = EXCLUDED.version
            WHERE movies.version < EXCLUDED.version
            """,
            movie.movie_id,
            movie.title,
            movie.version,
        )


class PgSeatClaims:
    """Seat claims: one `seat_claims` row per seat held by an active reservation."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def claim(self, screening_id: str, seats: Sequence[SeatLabel], reservation_id: str) -> None:
        labels = [str(seat) for seat in sorted(seats)]  # one lock order for everyone: no deadlocks
        # ON CONFLICT DO NOTHING is the primary key deciding the race without aborting the
        # transaction: an insert that meets a concurrent uncommitted claim of the same seat waits
        # for it, then is skipped if it committed. The seats not inserted are the taken ones.
        rows = await self._conn.fetch(
            """
            INSERT INTO seat_claims (screening_id, seat, reservation_id)
            SELECT $1, seat, $3 FROM unnest($2::text[]) WITH ORDINALITY AS t(seat, n) ORDER BY n
            ON CONFLICT DO NOTHING
            RETURNING seat
            """,
            screening_id,
            labels,
            uuid.UUID(reservation_id),
        )
        claimed = {row["seat"] for row in rows}
        taken = [SeatLabel.parse(label) for label in labels if label not in claimed]
        if taken:
            # The caller's unit of work rolls back, and with it the seats claimed just now.
            raise SeatsTaken(screening_id, taken)

    async def release(self, reservation_id: str) -> None:
        key = _as_uuid(reservation_id)
        if key is not None:
            await self._conn.execute("DELETE FROM seat_claims WHERE reservation_id = $1", key)

    async def held_seats(self, screening_id: str) -> frozenset[SeatLabel]:
        rows = await self._conn.fetch("SELECT seat FROM seat_claims WHERE screening_id = $1", screening_id)
        return frozenset(SeatLabel.parse(row["seat"]) for row in rows)


# ------------------------------------------------------------------------------ unit of work


class PgUnitOfWork(UnitOfWork):
    """One transaction: on a connection from the pool, or nested (a savepoint) in a transaction
    already open on `connection` (the event consumers use that to record the inbox entry and the
    effect in one transaction)."""

    def __init__(
        self,
        pool: asyncpg.Pool | None = None,
        *,
        connection: asyncpg.Connection | None = None,
        source: str = "//cinema/reservation",
    ) -> None:
        if (pool is None) == (connection is None):
            raise ValueError("give either a pool or a connection")
        self._pool = pool
        self._external = connection
        self._source = source
        self._conn: Any = None
        self._transaction: Any = None

    async def _begin(self) -> None:
        if self._external is not None:
            conn = self._external
        else:
            assert self._pool is not None
            conn = await self._pool.acquire()
        self._conn = conn
        try:
            transaction = conn.transaction()
            await transaction.start()
        except BaseException:
            await self._release()
            raise
        self._transaction = transaction
        repository = PgReservationRepository(conn)
        self.reservations = repository
        self.screenings = PgScreeningReplica(conn)
        self.claims = PgSeatClaims(conn)
        self.outbox = PgOutbox(conn, repository, source=self._source)

    async def _commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        try:
            await transaction.commit()
        finally:
            await self._release()

    def _committed(self, events: list[Any]) -> None:
        booking_metrics.count_committed(events)

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        try:
            if transaction is not None:
                await transaction.rollback()
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError) as error:
            # The connection broke: the server has rolled the transaction back already, and the
            # error that brought us here (if any) is the one worth propagating.
            log.warning("rollback on a broken connection: %s", error)
        finally:
            await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._external is None and self._pool is not None:
            await self._pool.release(conn)


class PgUnitOfWorkFactory:
    """`deps.uow`: a fresh unit of work on the pool per call."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def __call__(self) -> UnitOfWork:
        return PgUnitOfWork(self._pool)
