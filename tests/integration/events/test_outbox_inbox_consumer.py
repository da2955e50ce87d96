"""The event plumbing on real PostgreSQL and NATS: outbox relay, durable consumer, inbox, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cinema.common.v1.money_pb2 import Money
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.reservation.v1.events_pb2 import ReservationCancelled
from services.kit.events import envelope as env
from services.kit.events import inbox, jetstream, outbox
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from tests.support.servers import Server

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    for config in jetstream.stream_configs():
        with contextlib.suppress(NotFoundError):  # absent is fine
            await js.delete_stream(config.name or "")
    await jetstream.ensure_streams(js)
    yield js
    await nc.close()


@pytest.fixture
async def pool(pg_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_database, min_size=1, max_size=4)
    assert pool is not None
    await pool.execute(outbox.SCHEMA + inbox.SCHEMA)
    yield pool
    await pool.close()


def cancelled(n: int, reservation_id: str | None = None) -> EventEnvelope:
    rid = reservation_id or str(uuid.uuid4())
    event = ReservationCancelled(
        reservation_id=rid,
        customer_id="c1",
        seats=[f"A{n}"],
        amount=Money(minor_units=1200, currency_code="EUR"),
        reason=f"n={n}",
    )
    return env.wrap(event, source="cinema/reservation", subject=rid, aggregate_id=rid, aggregate_version=n)


async def collect(js: JetStreamContext, durable: str, expected: int, within_s: float = 10) -> list[EventEnvelope]:
    sub = await js.pull_subscribe("cinema.reservation.cancelled", durable=durable)
    got: list[EventEnvelope] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(got) < expected and loop.time() < deadline:
        try:
            msgs = await sub.fetch(expected - len(got), timeout=1)
        except TimeoutError:
            continue
        for m in msgs:
            got.append(env.decode(m.data))
            await m.ack()
    return got


async def test_relay_publishes_committed_events_in_order_and_never_rolled_back_ones(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    rid = str(uuid.uuid4())
    envelopes = [cancelled(n, rid) for n in range(1, 31)]
    async with pool.acquire() as conn:
        for e in envelopes:
            async with conn.transaction():
                await outbox.add(conn, e)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await outbox.add(conn, cancelled(99, rid))
                raise RuntimeError("use case failed after writing its event")

    relay = outbox.OutboxRelay(pool, js, outbox.RelaySettings(service="reservation", batch_size=7))
    task = asyncio.create_task(relay.run())
    try:
        got = await collect(js, "order-check", 30)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert [g.id for g in got] == [e.id for e in envelopes]  # commit order, nothing from the rollback
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_relay_interrupted_mid_stream_loses_nothing_and_duplicates_are_dropped(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    envelopes = [cancelled(n) for n in range(1, 201)]
    async with pool.acquire() as conn, conn.transaction():
        for e in envelopes:
            await outbox.add(conn, e)

    relay = outbox.OutboxRelay(pool, js, outbox.RelaySettings(service="reservation", batch_size=50))
    task = asyncio.create_task(relay.run())
    async with asyncio.timeout(30):  # fails loudly rather than hanging the suite
        while await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") < 50:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    task.cancel()  # interrupted mid-stream
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(20):  # a swallowed cancellation must fail the test, not hang it
            await task
    # As if the relay died after publishing but before marking: forget some marks.
    await pool.execute(
        "UPDATE outbox SET published_at = NULL WHERE position IN "
        "(SELECT position FROM outbox WHERE published_at IS NOT NULL ORDER BY position DESC LIMIT 10)"
    )

    relay = outbox.OutboxRelay(pool, js, outbox.RelaySettings(service="reservation", batch_size=50))
    task = asyncio.create_task(relay.run())
    try:
        got = await collect(js, "no-loss-check", 200)
        assert sorted(g.id for g in got) == sorted(e.id for e in envelopes)
        assert len(await collect(js, "no-loss-check", 1, within_s=2)) == 0  # and no duplicate behind them
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def test_consumer_applies_each_event_once_retries_failures_and_parks_poison(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    effects: list[str] = []
    failures_left = {"n": 2}

    async def handler(envelope: EventEnvelope, event: object) -> None:
        assert isinstance(event, ReservationCancelled)
        if event.reason == "n=2" and failures_left["n"] > 0:
            failures_left["n"] -= 1
            raise ConnectionError("transient")
        if event.reason == "n=3":
            raise ValueError("this one never works")
        async with pool.acquire() as conn, conn.transaction():
            if await inbox.first_delivery(conn, "test-consumer", envelope.id, envelope.type):
                effects.append(envelope.id)

    settings = ConsumerSettings(
        durable="test-consumer",
        context="reservation",
        subjects=["cinema.reservation.cancelled"],
        max_deliver=3,
        backoff_s=(0.1,),
    )
    consumer = EventConsumer(js, settings, handler)
    ok1, flaky, bad = cancelled(1), cancelled(2), cancelled(3)
    for e in (ok1, flaky, bad):
        await jetstream.publish(js, e)
    await js.publish("cinema.reservation.cancelled", b"\x00garbage", headers={"Nats-Msg-Id": "poison-1"})
    # The same event again with another message id (e.g. a producer's retry): the inbox stops it.
    await js.publish("cinema.reservation.cancelled", ok1.SerializeToString(), headers={"Nats-Msg-Id": "dup-1"})

    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                info = await js.consumer_info("CINEMA_RESERVATION", "test-consumer")
            except NotFoundError:  # not created yet
                continue
            if info.num_pending == 0 and info.num_ack_pending == 0 and len(effects) >= 2:
                break
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)

    assert sorted(effects) == sorted([ok1.id, flaky.id])  # each once; the flaky one after two retries
    dead = await js.pull_subscribe("cinema.deadletter.>", durable="dlq-reader", stream="CINEMA_DEAD_LETTER")
    parked = await dead.fetch(2, timeout=5)
    errors = sorted((m.headers or {})["Cinema-Dead-Letter-Error"] for m in parked)
    assert errors[0].startswith("handler failed 3 times") and errors[1].startswith("undecodable")
