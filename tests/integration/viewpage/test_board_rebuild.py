"""Rebuild by replay on real NATS and Redis, while reads and live applies go on; the read rate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from nats.js.client import JetStreamContext

from cinema.viewpage.v1 import board_pb2
from services.kit.caller import Caller
from services.viewpage.adapters.redis_store import RedisReadModel
from services.viewpage.adapters.replay import JetStreamHistory
from services.viewpage.service_layer import queries
from services.viewpage.service_layer.rebuild import rebuild
from services.viewpage.settings import ViewpageSettings
from tests.integration.viewpage import helpers as h
from tests.integration.viewpage.conftest import AppFactory
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


class Readers:
    """Board reads in a loop from several tasks; every failure or incomplete board is counted."""

    def __init__(self, store: RedisReadModel, workload: h.Workload, tasks: int = 4) -> None:
        self._store = store
        self._workload = workload
        self._stop = asyncio.Event()
        self.reads = 0
        self.errors: list[str] = []
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(tasks)]

    async def _loop(self) -> None:
        customer = Caller(subject="customer-1")
        movie_id = self._workload.movie_ids[0]
        while not self._stop.is_set():
            try:
                board = await queries.get_board(self._store)
                if board.count != len(self._workload.movie_ids):
                    self.errors.append(f"board with {board.count} movies")
                movie = board_pb2.BoardMovie.FromString(await queries.get_movie_board(self._store, movie_id))
                if not movie.screenings:
                    self.errors.append("movie without screenings")
                page = await queries.list_customer_reservations(self._store, customer, 10)
                if not page.reservations:
                    self.errors.append("no reservations")
                self.reads += 3
            except Exception as exc:
                self.errors.append(repr(exc))
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_rebuild_by_replay_equals_the_live_model_while_reads_never_fail(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel
) -> None:
    workload = h.Workload()
    await start_app()
    await h.publish_in_order(js, workload.catalog)
    await h.publish_all(js, workload.mixed(1500))
    await eventually(lambda: h.counters_match(store, workload), within_s=60)
    await asyncio.sleep(0.5)  # stale stragglers (late confirmations) handled too
    live_before = await store.dump()
    first_generation = await store.live_generation()

    # A quiet rebuild: the replayed model equals the live one.
    readers = Readers(store, workload)
    report = await rebuild(store, JetStreamHistory(js))
    await readers.stop()
    assert report.replaced == first_generation and report.generation > first_generation
    assert report.events == 12 + 1500
    assert await store.dump() == live_before
    assert await store.dump(first_generation) == {}  # the old key space is gone
    assert readers.errors == [] and readers.reads > 0
    print(f"\nquiet rebuild: {report.events} events in {report.seconds:.2f} s, {readers.reads} reads meanwhile")

    # A rebuild while events keep coming and reads keep going.
    readers = Readers(store, workload)
    more = workload.mixed(600)
    publishing = asyncio.create_task(h.publish_all(js, more, concurrency=4))
    report = await rebuild(store, JetStreamHistory(js))
    await publishing
    await eventually(lambda: h.counters_match(store, workload), within_s=60)
    await asyncio.sleep(0.5)
    await readers.stop()
    assert readers.errors == [], readers.errors[:5]
    print(f"busy rebuild: {report.events} events in {report.seconds:.2f} s, {readers.reads} reads meanwhile")
    after_busy = await store.dump()
    again = await rebuild(store, JetStreamHistory(js))
    assert again.events == 12 + 1500 + 600
    assert await store.dump() == after_busy  # nothing the live side applied during the rebuild was lost


async def test_rebuild_command_as_a_process(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel, settings: ViewpageSettings
) -> None:
    workload = h.Workload(movies=1, screenings_per_movie=2)
    await start_app()
    await h.publish_in_order(js, workload.catalog + workload.mixed(50))
    await eventually(lambda: h.counters_match(store, workload))
    await asyncio.sleep(0.3)
    before = await store.dump()
    env = {
        **os.environ,
        "VIEWPAGE_REDIS_URL": settings.redis_url,
        "VIEWPAGE_NATS_URL": settings.nats_url,
        "VIEWPAGE_KEY_PREFIX": settings.key_prefix,
        "VIEWPAGE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen" / "python")]),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.viewpage", "rebuild"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilt generation 2 from 53 events" in done.stdout
    assert await store.live_generation() == 2
    assert await store.dump() == before


async def _rate(call: Callable[[], Awaitable[object]], seconds: float = 3.0, concurrency: int = 16) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while loop.time() < deadline:
            await call()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def test_board_read_rate_against_raw_get(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel, redis_client: aioredis.Redis
) -> None:
    workload = h.Workload(movies=5, screenings_per_movie=4)
    await start_app()
    await h.publish_in_order(js, workload.catalog)
    await h.publish_all(js, workload.mixed(300))
    await eventually(lambda: h.counters_match(store, workload))
    await redis_client.set(f"{store.prefix}:raw", b"x" * 64)

    async def raw_get() -> object:
        return await redis_client.get(f"{store.prefix}:raw")

    async def board() -> object:
        return await queries.get_board(store)

    async def movie_board() -> object:
        return await queries.get_movie_board(store, workload.movie_ids[0])

    raw = await _rate(raw_get)
    boards = await _rate(board)
    movies = await _rate(movie_board)
    print(
        f"\nraw GET {raw:,.0f}/s; GetBoard (5 movies, 20 screenings) {boards:,.0f}/s; "
        f"GetMovieBoard {movies:,.0f}/s (store + assembly, 16 in flight, one Redis round trip each)"
    )
    assert boards > 0 and movies > 0 and raw > 0


async def test_a_board_built_by_older_code_is_rebuilt_when_the_service_starts(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel, redis_client: aioredis.Redis
) -> None:
    workload = h.Workload(movies=3, screenings_per_movie=2)
    first = await start_app()
    await h.publish_in_order(js, workload.catalog)

    async def listed() -> bool:
        return (await queries.get_board(store)).count == 3

    await eventually(listed)
    await first.stop()
    # What the code before the materialised entries left: documents and counters only, no shape.
    live = await store.live_generation()
    derived = [key async for key in redis_client.scan_iter(match=f"{store.prefix}:g{live}:ix*")]
    derived += [f"{store.prefix}:g{live}:{name}".encode() for name in ("entries", "ixm", "days")]
    await redis_client.delete(f"{store.prefix}:shape", *derived)
    assert (await queries.get_board(store)).count == 0

    second = await start_app()
    assert not second.shape_current
    await eventually(listed)
    assert await store.live_generation() > live
    assert second.upgrade is not None
    await second.upgrade
    assert second.shape_current
