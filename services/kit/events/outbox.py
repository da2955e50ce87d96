"""Transactional outbox on PostgreSQL, and the relay that publishes it to JetStream.

A use case writes its events into the `outbox` table in the same transaction as its state
change (`add`), so an event exists exactly when the change committed. The relay publishes
unpublished rows in `position` order and marks them published.

Ordering: rows of one aggregate are written by transactions that hold that aggregate's row
lock, so their positions follow commit order; the relay is a single leader (a PostgreSQL
advisory lock) publishing in position order, hence per-aggregate commit order on the wire.

Delivery: at least once. A relay killed after JetStream acknowledged a publish but before it
marked the row republishes it on restart; the publish carries `Nats-Msg-Id` = event id, so
JetStream drops that duplicate within its duplicate window (the common case: not twice).
Consumers stay idempotent for the rest (inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from dataclasses import dataclass

import asyncpg
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.aio import honour_cancellation, wait_event
from services.kit.events import jetstream
from services.kit.events.outbox_metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED

log = logging.getLogger("cinema.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    position      bigserial   PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    aggregate_id  text        NOT NULL,
    envelope      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (position) WHERE published_at IS NULL;
"""

NOTIFY_CHANNEL = "cinema_outbox"
TABLE = "outbox"


async def add(conn: asyncpg.Connection, envelope: EventEnvelope) -> None:
    """Write `envelope` to the outbox inside the caller's transaction, and wake the relay on commit."""
    await conn.execute(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, envelope) VALUES ($1, $2, $3, $4)",
        envelope.id,
        envelope.type,
        envelope.aggregate_id,
        envelope.SerializeToString(deterministic=True),
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")  # delivered at commit, dropped on rollback


@dataclass
class RelaySettings:
    service: str
    batch_size: int = 100
    # Every commit that writes events NOTIFYs the leader, which publishes at once: the poll is
    # only the fallback for a NOTIFY missed (e.g. during a reconnect), and, for a replica that does
    # not lead, how often it tries to take over. Each idle round is two queries, so it is slow.
    poll_interval_s: float = 10.0
    retry_s: float = 1.0  # after a failed publish or an unreachable store
    retain_published_s: float = 24 * 3600.0
    publish_timeout_s: float = 5.0


class OutboxRelay:
    """Publishes a service's outbox to JetStream; run one per service replica (one leads)."""

    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, settings: RelaySettings) -> None:
        self._pool = pool
        self._js = js
        self._settings = settings
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # A stable 63-bit key per service, so replicas of one service share the leadership.
        self._lock_key = zlib.crc32(f"outbox:{settings.service}".encode())
        self._publish_failed = False  # the last batch stopped at a failed publish: retry soon

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Lead when the lock is free; publish until stopped. Survives store and NATS outages."""
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as conn:
                    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                        await self._sleep(self._settings.poll_interval_s)
                        continue
                    try:
                        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                        log.info("outbox relay leading for %s", self._settings.service)
                        await self._lead(conn)
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                            await conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox relay: store unavailable (%s); retrying", exc)
                await self._sleep(self._settings.retry_s)

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)
        self._wake.clear()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        last_cleanup = 0.0
        while not self._stopping.is_set():
            published = await self.publish_batch(conn)
            if time.monotonic() - last_cleanup > 60:
                await self._cleanup(conn)
                last_cleanup = time.monotonic()
            if self._publish_failed:
                await self._sleep(self._settings.retry_s)
            elif published < self._settings.batch_size:
                await self._sleep(self._settings.poll_interval_s)

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish the next batch in position order; returns how many were published."""
        self._publish_failed = False
        rows = await conn.fetch(
            "SELECT position, envelope FROM outbox WHERE published_at IS NULL ORDER BY position LIMIT $1",
            self._settings.batch_size,
        )
        done: list[int] = []
        try:
            for row in rows:
                envelope = EventEnvelope()
                envelope.ParseFromString(row["envelope"])
                try:
                    await jetstream.publish(self._js, envelope, ack_timeout_s=self._settings.publish_timeout_s)
                except Exception as exc:  # NATS down or slow: keep order, stop here, retry later
                    log.warning("outbox relay: publish of %s failed (%s); will retry", envelope.id, exc)
                    self._publish_failed = True
                    break
                done.append(row["position"])
                honour_cancellation()  # nats-py may have swallowed one (see services.kit.aio)
        finally:
            if done:
                await conn.execute("UPDATE outbox SET published_at = now() WHERE position = ANY($1::bigint[])", done)
                OUTBOX_PUBLISHED.labels(self._settings.service, TABLE).inc(len(done))
        await self._observe(conn)
        return len(done)

    async def _observe(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
            "FROM outbox WHERE published_at IS NULL"
        )
        if row is not None:
            OUTBOX_BACKLOG.labels(self._settings.service, TABLE).set(row["n"])
            OUTBOX_OLDEST_AGE.labels(self._settings.service, TABLE).set(float(row["age"] or 0.0))

    async def _cleanup(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            self._settings.retain_published_s,
        )
