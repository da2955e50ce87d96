"""Replicas share the work and a stopped consumer catches up: every customer message goes out once.

Three notification apps (consumers + delivery loops, as three replicas would run them) share
one delivery log, the durable consumers and the SMTP sink; mails are counted in the sink's
.eml files by Message-ID (derived from the event id).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.events import jetstream
from services.kit.testing_tokens import LocalTokenIssuer
from services.notification.bootstrap import NotificationApp
from services.notification.settings import NotificationSettings
from tests.integration.notification.conftest import consumers_idle, settings_for, started
from tests.integration.notification.helpers import SmtpSink, confirmed, message_id
from tests.support.polling import eventually
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def settings(
    postgres_server: Server, nats_server: Server, sink: SmtpSink, issuer: LocalTokenIssuer, jwks_path: Path
) -> NotificationSettings:
    url = await create_database(postgres_server, "notification_scale")
    return settings_for(url, nats_server.url, sink.port, issuer, jwks_path, db_pool_max=5)


@pytest.fixture(scope="module")
async def pool(settings: NotificationSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    yield pool
    await pool.close()


async def publish_all(js: JetStreamContext, envelopes: Sequence[EventEnvelope], in_flight: int = 64) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(envelope: EventEnvelope) -> None:
        async with gate:
            await jetstream.publish(js, envelope, ack_timeout_s=30)

    await asyncio.gather(*(one(e) for e in envelopes))


async def sent_count(pool: asyncpg.Pool, envelopes: Sequence[EventEnvelope]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM notifications WHERE state = 'SENT' AND event_id = ANY($1::uuid[])",
        [e.id for e in envelopes],
    )
    return count


async def assert_each_mailed_once(sink: SmtpSink, envelopes: Sequence[EventEnvelope]) -> None:
    counts = await asyncio.to_thread(sink.count_by_message_id)
    wrong = {message_id(e): counts[message_id(e)] for e in envelopes if counts[message_id(e)] != 1}
    assert wrong == {}


async def test_three_replicas_send_3000_messages_each_once(
    settings: NotificationSettings, js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    replicas = [NotificationApp(settings) for _ in range(3)]
    for app in replicas:
        await started(app, js)
    try:
        envelopes = [confirmed(customer_id=f"customer-{i % 50}") for i in range(3000)]
        await publish_all(js, envelopes)
        await eventually(lambda: _done(pool, envelopes), within_s=300)
        await eventually(lambda: consumers_idle(js), within_s=60)
    finally:
        for app in replicas:
            await app.stop()
    await assert_each_mailed_once(sink, envelopes)
    # One attempt each: replicas never claimed the same delivery twice.
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE attempts <> 1") == 0


async def _done(pool: asyncpg.Pool, envelopes: Sequence[EventEnvelope]) -> bool:
    return await sent_count(pool, envelopes) == len(envelopes)


async def test_a_stopped_consumer_catches_up_on_1000_events_without_loss_or_doubles(
    settings: NotificationSettings, js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    first = await started(NotificationApp(settings), js)
    await first.stop()  # the durable consumers stay, at their position
    envelopes = [confirmed(customer_id=f"late-{i % 20}") for i in range(1000)]
    await publish_all(js, envelopes)
    assert await sent_count(pool, envelopes) == 0
    again = await started(NotificationApp(settings), js)
    try:
        await eventually(lambda: _done(pool, envelopes), within_s=240)
        await eventually(lambda: consumers_idle(js), within_s=60)
    finally:
        await again.stop()
    await assert_each_mailed_once(sink, envelopes)
