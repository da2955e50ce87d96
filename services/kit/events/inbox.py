"""Inbox on PostgreSQL: a consumer records each handled event id in the same transaction as
the event's effect, so a redelivered event finds its id and has no second effect."""

from __future__ import annotations

import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
"""


async def first_delivery(conn: asyncpg.Connection, consumer: str, event_id: str, event_type: str) -> bool:
    """Record the event as handled by `consumer`; False when it already was (skip the effect).

    Call inside the transaction that applies the effect: if the transaction rolls back, the
    record goes with it and the redelivery is handled again.
    """
    inserted = await conn.fetchval(
        "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
        event_type,
    )
    return bool(inserted)
