"""Each store is real: the drivers the services use, against the servers the tests start."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from tests.support.servers import Server

pytestmark = pytest.mark.integration


async def test_postgres_transaction_commits_and_rolls_back(pg_database: str) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute("CREATE TABLE seat_claim (screening_id uuid, seat text, PRIMARY KEY (screening_id, seat))")
        screening = "7f1d2c1e-0000-4000-8000-000000000001"
        async with conn.transaction():
            await conn.execute("INSERT INTO seat_claim VALUES ($1, 'A1'), ($1, 'A2')", screening)

        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await conn.execute("INSERT INTO seat_claim VALUES ($1, 'A3')", screening)
                await conn.execute("INSERT INTO seat_claim VALUES ($1, 'A1')", screening)  # taken: all undone

        seats = [r["seat"] for r in await conn.fetch("SELECT seat FROM seat_claim ORDER BY seat")]
        assert seats == ["A1", "A2"]
        assert await conn.fetchval("SHOW server_version_num") >= "180000"
    finally:
        await conn.close()


async def test_mongo_insert_find_update_with_index(mongo_server: Server) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url)
    db = client[f"{mongo_server.extra['db_prefix']}store_test"]
    try:
        await db.drop_collection("movies")
        movies = db["movies"]
        await movies.create_index([("title", ASCENDING)], unique=True, name="title_unique")
        await movies.insert_one({"_id": "m1", "title": "Arrival", "review_count": 0})
        with pytest.raises(DuplicateKeyError):
            await movies.insert_one({"_id": "m2", "title": "Arrival"})

        result = await movies.update_one({"_id": "m1"}, {"$inc": {"review_count": 1}})
        assert result.modified_count == 1
        found = await movies.find_one({"title": "Arrival"})
        assert found is not None and found["review_count"] == 1

        names = {ix["name"] async for ix in await movies.list_indexes()}
        assert "title_unique" in names
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_redis_pipeline_is_one_round_trip_transaction(redis_server: Server) -> None:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset("board:screening:s1", mapping={"free": 50, "total": 50})
            pipe.hincrby("board:screening:s1", "free", -2)
            pipe.hgetall("board:screening:s1")
            results = await pipe.execute()
        assert results[-1] == {"free": "48", "total": "50"}
    finally:
        await client.delete("board:screening:s1")
        await client.aclose()


async def _connect(url: str) -> NATS:
    nc = NATS()
    await nc.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    return nc


async def test_jetstream_durable_pull_consumer_survives_a_nats_restart(nats_server: Server) -> None:
    nc = await _connect(nats_server.url)
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream("STORE_TEST")
    await js.add_stream(StreamConfig(name="STORE_TEST", subjects=["cinema.storetest.>"]))
    for i in range(5):
        ack = await js.publish("cinema.storetest.happened", f"event {i}".encode(), headers={"Nats-Msg-Id": f"e{i}"})
        assert not ack.duplicate
    again = await js.publish("cinema.storetest.happened", b"event 0", headers={"Nats-Msg-Id": "e0"})
    assert again.duplicate  # publish dedupe by event id

    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=5, ack_wait=30)
    sub = await js.pull_subscribe("cinema.storetest.>", durable="store-test", config=config)
    first = await sub.fetch(2, timeout=5)
    assert [m.data for m in first] == [b"event 0", b"event 1"]
    for m in first:
        await m.ack_sync()
    await nc.close()

    await asyncio.to_thread(nats_server.restart)

    nc = await _connect(nats_server.url)
    js = nc.jetstream()
    try:
        sub = await js.pull_subscribe("cinema.storetest.>", durable="store-test", config=config)
        rest = await sub.fetch(3, timeout=5)
        assert [m.data for m in rest] == [b"event 2", b"event 3", b"event 4"]
        for m in rest:
            await m.ack_sync()
        info = await js.consumer_info("STORE_TEST", "store-test")
        assert info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await js.delete_stream("STORE_TEST")
        await nc.close()
