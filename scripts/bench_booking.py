#!/usr/bin/env python3
"""Booking benchmark: reservations per second against raw limits measured in the same run.

Starts its own PostgreSQL (durable settings, as `make up`), NATS, payment and reservation
(real processes) on free ports, then measures, each for a fixed time:
  - raw asyncpg single-row INSERT transactions (1 stream, and 50 concurrent on a pool of 10);
  - CreateReservation (one seat, approved card) for one customer stream, and 50 concurrent.
Prints a table with the ratios and writes .reports/bench-booking.json. Loopback only.

    .venv/bin/python scripts/bench_booking.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
from nats.aio.client import Client as NATS

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1.events_pb2 import ScreeningScheduled
from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.stack import stores
from scripts.stack.paths import REPO
from scripts.stack.process import free_port
from scripts.stack.services import Identity, payment_process, reservation_process
from services.kit.events import envelope as env
from services.kit.events import jetstream

ROWS, PER_ROW = 26, 99  # 2,574 seats a screening


async def measure(
    name: str, seconds: float, concurrency: int, op: Callable[[int], Awaitable[None]]
) -> dict[str, object]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.monotonic() < stop_at:
            i = next(counter)
            t0 = time.perf_counter()
            try:
                await op(i)
            except grpc.aio.AioRpcError as err:
                errors[err.code().name] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    result: dict[str, object] = {
        "ops": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
        "rate": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }
    print(
        f"  {name:<38} {len(latencies) / elapsed:>8.0f}/s  p50 {pct(0.5):6.1f} ms  p99 {pct(0.99):6.1f} ms"
        f"  errors {dict(errors) or 0}",
        flush=True,
    )
    return result


async def publish_screenings(nats_url: str, count: int) -> list[str]:
    nc = NATS()
    await nc.connect(nats_url)
    ids = []
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js)
        for _ in range(count):
            sid, mid = str(uuid.uuid4()), str(uuid.uuid4())
            event = ScreeningScheduled(
                screening_id=sid,
                movie_id=mid,
                movie_title="Bench",
                duration_minutes=100,
                hall="B",
                seat_map=SeatMap(rows=ROWS, seats_per_row=PER_ROW),
                price=Money(minor_units=900, currency_code="EUR"),
            )
            event.start_time.FromDatetime(datetime.now(UTC) + timedelta(days=7))
            await jetstream.publish(
                js, env.wrap(event, source="bench", subject=sid, aggregate_id=sid, aggregate_version=1)
            )
            ids.append(sid)
    finally:
        await nc.close()
    return ids


async def main(seconds: float) -> int:
    root = stores.scratch_dir("bench")
    pg_spec = stores.PostgresSpec(root / "pg", free_port(), durable=True)
    pg = stores.postgres_process(pg_spec, root / "postgres.log")
    nats_spec = stores.NatsSpec(root / "nats", free_port(), free_port())
    nats = stores.nats_process(nats_spec, root / "nats.log")
    procs = [pg, nats]
    for p in procs:
        p.start()
    for p in procs:
        p.wait_ready(60)
    identity = Identity(root)
    await stores.create_databases(pg_spec.url(), ("reservation", "payment", "raw"))
    payment = payment_process(root, identity, pg_spec.url("payment"), nats_spec.url, log_level="WARNING")
    payment.start()
    reservation = reservation_process(
        root, identity, pg_spec.url("reservation"), nats_spec.url, payment.address, log_level="WARNING"
    )
    reservation.start()
    results: dict[str, dict[str, object]] = {}
    try:
        print(f"raw limits and booking, {seconds:.0f} s each (2 cores, loopback):", flush=True)
        pool = await asyncpg.create_pool(pg_spec.url("raw"), min_size=10, max_size=10)
        assert pool is not None
        await pool.execute("CREATE TABLE IF NOT EXISTS raw_insert (id uuid PRIMARY KEY, seat text, at timestamptz)")

        async def raw_insert(_: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO raw_insert VALUES ($1, 'A1', now())", uuid.uuid4())

        results["raw_insert_1"] = await measure("asyncpg INSERT tx, 1 stream", seconds, 1, raw_insert)
        results["raw_insert_50"] = await measure("asyncpg INSERT tx, 50 concurrent", seconds, 50, raw_insert)
        await pool.close()

        screenings = await publish_screenings(nats_spec.url, 12)
        channel = grpc.aio.insecure_channel(reservation.address)
        stub = reservation_pb2_grpc.ReservationServiceStub(channel)
        for sid in screenings:  # wait until the replica knows them all
            for _ in range(200):
                try:
                    await stub.GetSeatAvailability(
                        reservation_pb2.GetSeatAvailabilityRequest(screening_id=sid),
                        metadata=identity.customer("probe"),
                        timeout=5,
                    )
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
        seats = [(sid, f"{chr(65 + r)}{n}") for sid in screenings for r in range(ROWS) for n in range(1, PER_ROW + 1)]
        customers = [identity.customer(f"bench-{i}") for i in range(50)]
        card = Card(number="4242424242424242", expiry_month=12, expiry_year=2035, cvc="123")
        next_seat = iter(seats)

        async def reserve(i: int) -> None:
            sid, seat = next(next_seat)
            await stub.CreateReservation(
                reservation_pb2.CreateReservationRequest(
                    screening_id=sid, seats=[seat], request_id=str(uuid.uuid4()), card=card
                ),
                metadata=customers[i % 50],
                timeout=10,
            )

        results["reserve_1"] = await measure("CreateReservation, 1 customer stream", seconds, 1, reserve)
        results["reserve_50"] = await measure("CreateReservation, 50 concurrent", seconds, 50, reserve)
        await channel.close(None)
    finally:
        reservation.stop()
        payment.stop()
        for p in reversed(procs):
            p.stop()

    def rate(key: str) -> float:
        value = results[key]["rate"]
        assert isinstance(value, float)
        return value

    ratio_1 = rate("reserve_1") / rate("raw_insert_1")
    ratio_50 = rate("reserve_50") / rate("raw_insert_50")
    print(f"  ratio reserve/raw insert: 1 stream {ratio_1:.3f}, 50 concurrent {ratio_50:.3f}")
    out = REPO / ".reports" / "bench-booking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "results": results,
                "ratios": {"reserve_1_over_raw_1": ratio_1, "reserve_50_over_raw_50": ratio_50},
            },
            indent=2,
        )
    )
    print(f"  report: {out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    sys.exit(asyncio.run(main(parser.parse_args().seconds)))
