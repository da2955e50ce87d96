"""The delivery log on PostgreSQL (asyncpg): migrations and the `DeliveryLog` port.

Every operation is one statement, so each is its own transaction. Lease times are the
database's `now()`, never a replica's clock, so replicas with skewed clocks agree on who holds
a row. Claims use `FOR UPDATE SKIP LOCKED`: replicas polling together take disjoint rows.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import asyncpg

from services.kit import pg
from services.kit.errors import InvalidArgument, Unavailable
from services.notification.domain.model import IN_DOUBT, DeliveryState, Draft, ReservationFacts
from services.notification.service_layer.ports import Claim, DeliveryLog, Notification, NotificationPage

MIGRATIONS = Path(__file__).with_name("migrations")

STORE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

_INSERT = """
INSERT INTO notifications (id, event_id, event_type, message_kind, customer_id, recipient, subject, body,
                           reservation_id, movie_title, starts_at, hall, seats, state, last_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (event_id) DO NOTHING
RETURNING true
"""
_KNOWN_FACTS = """
SELECT movie_title, starts_at, hall, seats FROM notifications
WHERE reservation_id = $1 AND (movie_title <> '' OR starts_at IS NOT NULL)
ORDER BY created_at DESC LIMIT 1
"""
# Attempts are counted when claimed: an attempt cut short by a crash still counts.
_CLAIM = """
UPDATE notifications n
SET claim_token = $1, claimed_until = now() + make_interval(secs => $3), attempts = n.attempts + 1
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE state IN ('PENDING', 'RETRYING') AND next_attempt_at <= now() AND handover_at IS NULL
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING n.id, n.event_id, n.recipient, n.subject, n.body, n.attempts
"""
_BEGIN_HANDOVER = """
UPDATE notifications SET handover_at = now()
WHERE id = $1 AND claim_token = $2 AND claimed_until > now() AND state IN ('PENDING', 'RETRYING')
RETURNING true
"""
# SENT wins over a PARKED/IN_DOUBT written meanwhile by another replica: it is the truth.
_MARK_SENT = """
UPDATE notifications
SET state = 'SENT', sent_at = now(), last_error = '', claim_token = NULL, claimed_until = NULL
WHERE id = $1 AND claim_token = $2 AND state <> 'SENT'
"""
_MARK_RETRY = """
UPDATE notifications
SET state = 'RETRYING', last_error = $3, next_attempt_at = now() + make_interval(secs => $4),
    claim_token = NULL, claimed_until = NULL, handover_at = NULL
WHERE id = $1 AND claim_token = $2 AND state IN ('PENDING', 'RETRYING')
"""
_MARK_PARKED = """
UPDATE notifications
SET state = 'PARKED', last_error = $3, claim_token = NULL, claimed_until = NULL
WHERE id = $1 AND claim_token = $2 AND state IN ('PENDING', 'RETRYING')
"""
# The claim token stays, so a slow replica that did deliver can still record SENT.
_PARK_IN_DOUBT = """
UPDATE notifications SET state = 'PARKED', last_error = $1
WHERE state IN ('PENDING', 'RETRYING') AND handover_at IS NOT NULL AND claimed_until < now()
"""
_REQUEUE_IN_DOUBT = """
UPDATE notifications SET state = 'RETRYING', last_error = $1, handover_at = NULL, claim_token = NULL,
    claimed_until = NULL, next_attempt_at = now()
WHERE state IN ('PENDING', 'RETRYING') AND handover_at IS NOT NULL AND claimed_until < now()
"""
_COLUMNS = (
    "id, event_id, event_type, customer_id, recipient, subject, body, reservation_id, state, attempts,"
    " last_error, created_at, sent_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM notifications"  # noqa: S608  # constant text, no input


async def migrate(dsn: str) -> list[int]:
    return await pg.migrate(dsn, MIGRATIONS)


@contextlib.contextmanager
def store_outage_is_unavailable(retry_after_s: float = 1.0) -> Iterator[None]:
    """A lost or refused database connection is UNAVAILABLE (try again), not INTERNAL."""
    try:
        yield
    except STORE_DOWN as error:
        raise Unavailable(
            "the notification store is unavailable", retry_after_s=retry_after_s, reason="STORE_UNAVAILABLE"
        ) from error


def encode_page_token(created_at: datetime, notification_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), notification_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_text, id_text = json.loads(raw)
        created_at = datetime.fromisoformat(created_text)
        notification_id = uuid.UUID(id_text)
        if created_at.tzinfo is None:
            raise ValueError("naive time")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidArgument.for_field("page_token", "not a token this service issued") from None
    return created_at, notification_id


def _notification(row: asyncpg.Record) -> Notification:
    return Notification(
        id=str(row["id"]),
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        customer_id=row["customer_id"],
        recipient=row["recipient"],
        subject=row["subject"],
        body=row["body"],
        reservation_id=row["reservation_id"],
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


class PgDeliveryLog(DeliveryLog):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, draft: Draft) -> bool:
        facts = draft.reservation
        inserted = await self._pool.fetchval(
            _INSERT,
            uuid.uuid4(),
            uuid.UUID(draft.event_id),
            draft.event_type,
            draft.message_kind.value,
            draft.customer_id,
            draft.recipient,
            draft.subject,
            draft.body,
            draft.reservation_id,
            facts.movie_title,
            facts.starts_at,
            facts.hall,
            list(facts.seats),
            draft.state.value,
            draft.error,
        )
        return bool(inserted)

    async def known_facts(self, reservation_id: str) -> ReservationFacts | None:
        row = await self._pool.fetchrow(_KNOWN_FACTS, reservation_id)
        if row is None:
            return None
        return ReservationFacts(row["movie_title"], row["starts_at"], row["hall"], tuple(row["seats"]))

    async def claim_due(self, limit: int, lease_s: float) -> Sequence[Claim]:
        token = uuid.uuid4()
        rows = await self._pool.fetch(_CLAIM, token, limit, lease_s)
        return [
            Claim(
                id=str(r["id"]),
                event_id=str(r["event_id"]),
                recipient=r["recipient"],
                subject=r["subject"],
                body=r["body"],
                attempts=r["attempts"],
                token=str(token),
            )
            for r in rows
        ]

    async def begin_handover(self, claim: Claim) -> bool:
        return bool(await self._pool.fetchval(_BEGIN_HANDOVER, uuid.UUID(claim.id), uuid.UUID(claim.token)))

    async def mark_sent(self, claim: Claim) -> None:
        await self._pool.execute(_MARK_SENT, uuid.UUID(claim.id), uuid.UUID(claim.token))

    async def mark_failed(self, claim: Claim, error: str, retry_in_s: float | None) -> None:
        key, token = uuid.UUID(claim.id), uuid.UUID(claim.token)
        if retry_in_s is None:
            await self._pool.execute(_MARK_PARKED, key, token, error[:2000])
        else:
            await self._pool.execute(_MARK_RETRY, key, token, error[:2000], retry_in_s)

    async def settle_in_doubt(self, retry: bool) -> int:
        status: str = await self._pool.execute(_REQUEUE_IN_DOUBT if retry else _PARK_IN_DOUBT, IN_DOUBT)
        return int(status.rsplit(" ", 1)[-1])

    async def list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> NotificationPage:
        if page_token:
            created_at, after_id = decode_page_token(page_token)
            rows = await self._pool.fetch(
                _SELECT + " WHERE customer_id = $1 AND (created_at, id) < ($2, $3)"
                " ORDER BY created_at DESC, id DESC LIMIT $4",
                customer_id,
                created_at,
                after_id,
                page_size + 1,
            )
        else:
            rows = await self._pool.fetch(
                _SELECT + " WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                customer_id,
                page_size + 1,
            )
        page = [_notification(row) for row in rows[:page_size]]
        token = encode_page_token(page[-1].created_at, page[-1].id) if len(rows) > page_size and page else ""
        return NotificationPage(page, token)

    async def get(self, notification_id: str) -> Notification | None:
        try:
            key = uuid.UUID(notification_id)
        except ValueError:
            return None
        row = await self._pool.fetchrow(_SELECT + " WHERE id = $1", key)
        return None if row is None else _notification(row)
