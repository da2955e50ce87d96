"""The raw limits, measured in the same run, on the same machine, against the same servers.

Each is a closed loop (the point here is the ceiling, not the user's view): first one call at a
time (the latency floor), then 64 in flight (the throughput ceiling), for a few seconds each:

- grpc.aio unary echo against a tiny server process of our own (scripts/bench/echo_server.py);
- asyncpg one-row INSERT transaction on a pool of 8, in a `bench_raw` database of the stack's
  PostgreSQL (durable settings, as the services have them);
- redis.asyncio GET (hiredis) of one key on the stack's Redis;
- JetStream acknowledged publish with a Nats-Msg-Id to a `BENCH_RAW` stream (file storage) on
  the stack's NATS, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import grpc
import grpc.aio
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.api import StorageType, StreamConfig

from scripts.bench.echo_server import METHOD
from scripts.bench.stats import LatencySummary, summarize
from scripts.stack.process import ManagedProcess, free_port, port_open

CONCURRENCY = (1, 64)
PAYLOAD = b"x" * 64


async def closed_loop(op: Callable[[], Awaitable[object]], seconds: float, concurrency: int) -> LatencySummary:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await op()
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    summary = summarize(latencies, time.perf_counter() - started)
    if errors:
        print(f"    ({errors} errors)", flush=True)
    return summary


def start_echo_server(log_dir: Path) -> ManagedProcess:
    port = free_port()
    argv = [sys.executable, "-m", "scripts.bench.echo_server", "--port", str(port)]
    proc = ManagedProcess("echo", argv, log_dir / "echo.log", lambda: port_open(port))
    proc.start()
    proc.wait_ready(30)
    return proc


def _database_url(admin_url: str, database: str) -> str:
    return urlparse(admin_url)._replace(path=f"/{database}").geturl()


async def measure_raw_limits(
    echo_address: str, pg_admin_url: str, redis_url: str, nats_url: str, seconds: float
) -> dict[str, dict[str, LatencySummary]]:
    """name -> {"c1": ..., "c64": ...}; prints each as it is measured."""
    results: dict[str, dict[str, LatencySummary]] = {}

    async def run(name: str, label: str, op: Callable[[], Awaitable[object]]) -> None:
        results[name] = {}
        for concurrency in CONCURRENCY:
            summary = await closed_loop(op, seconds, concurrency)
            results[name][f"c{concurrency}"] = summary
            print(
                f"  {label:<40} {concurrency:>3} in flight  {summary.rate_per_s:>9,.0f}/s"
                f"  p50 {summary.p50_ms:6.2f} ms  p99 {summary.p99_ms:6.2f} ms",
                flush=True,
            )

    async with grpc.aio.insecure_channel(echo_address) as channel:
        echo = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)

        async def echo_call() -> object:
            return await echo(PAYLOAD, timeout=5)

        await echo_call()
        await run("grpc_echo", "grpc.aio unary echo", echo_call)

    admin = await asyncpg.connect(pg_admin_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = 'bench_raw'"):
            await admin.execute('CREATE DATABASE "bench_raw"')
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(_database_url(pg_admin_url, "bench_raw"), min_size=8, max_size=8)
    try:
        await pool.execute("DROP TABLE IF EXISTS raw_insert")
        await pool.execute("CREATE TABLE raw_insert (id uuid PRIMARY KEY, seat text NOT NULL, at timestamptz)")

        async def insert() -> object:
            async with pool.acquire() as conn, conn.transaction():
                return await conn.execute("INSERT INTO raw_insert VALUES ($1, 'A1', now())", uuid.uuid4())

        await run("pg_insert", "asyncpg one-row INSERT transaction", insert)
        await pool.execute("DROP TABLE raw_insert")
    finally:
        await pool.close()

    client = aioredis.Redis.from_url(redis_url, max_connections=64)
    try:
        await client.set("bench:raw:key", "x" * 64)

        async def get() -> object:
            return await client.get("bench:raw:key")

        await run("redis_get", "redis.asyncio GET", get)
        await client.delete("bench:raw:key")
    finally:
        await client.aclose()

    nc = NATS()
    await nc.connect(nats_url)
    try:
        js = nc.jetstream()
        stream = "BENCH_RAW"
        await js.add_stream(
            StreamConfig(name=stream, subjects=["bench.raw.>"], storage=StorageType.FILE, duplicate_window=600.0)
        )

        async def publish() -> object:
            return await js.publish(
                "bench.raw.event", PAYLOAD * 4, timeout=5, stream=stream, headers={"Nats-Msg-Id": str(uuid.uuid4())}
            )

        try:
            await run("nats_publish", "JetStream publish (acked, Nats-Msg-Id)", publish)
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()
    return results
