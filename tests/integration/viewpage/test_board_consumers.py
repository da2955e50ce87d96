"""The board's consumers on real NATS and Redis: replicas share the work with no double apply, a
stopped consumer catches up, late and redelivered events never roll the board back, poison is
parked without blocking the stream, and the lag under a steady feed.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import pytest
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.events import envelope as env
from services.kit.events.naming import DEAD_LETTER_STREAM
from services.viewpage.adapters.events import meta_of, to_domain
from services.viewpage.adapters.redis_store import RedisReadModel
from services.viewpage.domain.projection import plan_for
from tests.integration.viewpage import helpers as h
from tests.integration.viewpage.conftest import AppFactory
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def handled(apps: list[object]) -> int:
    return sum(outcomes(apps).values())


def outcomes(apps: list[object]) -> dict[str, int]:
    total = {"applied": 0, "stale": 0, "ignored": 0}
    for app in apps:
        handler = getattr(app, "handler", None)
        assert handler is not None
        for key, value in handler.outcomes.items():
            total[key] += value
    return total


async def test_three_replicas_apply_3000_events_each_once(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel
) -> None:
    workload = h.Workload(movies=3, screenings_per_movie=4)
    feed = workload.catalog + workload.mixed(3000 - len(workload.catalog))
    assert len(feed) == 3000
    replicas = [await start_app() for _ in range(3)]
    started = time.perf_counter()
    await h.publish_in_order(js, workload.catalog)
    await h.publish_all(js, feed[len(workload.catalog) :])

    async def all_handled() -> bool:
        return handled(list(replicas)) >= 3000

    await eventually(all_handled, within_s=120, every_s=0.1)
    elapsed = time.perf_counter() - started
    per_replica = [sum(app.handler.outcomes.values()) if app.handler else 0 for app in replicas]
    print(
        f"\n3 replicas handled 3,000 events in {elapsed:.2f} s; per replica {per_replica}; {outcomes(list(replicas))}"
    )
    assert await h.counters_match(store, workload)  # a lost or a doubled apply would show here
    # "stale": a confirmation that arrived after its own cancellation (published concurrently).
    await asyncio.sleep(1.0)
    assert handled(list(replicas)) == 3000  # each event handled once: no redelivery either
    assert await h.counters_match(store, workload)


async def test_a_stopped_consumer_catches_up_with_nothing_lost_or_doubled(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel
) -> None:
    workload = h.Workload()
    first = await start_app()
    await h.publish_in_order(js, workload.catalog)
    early = workload.mixed(100)
    await h.publish_all(js, early)
    await eventually(lambda: h.counters_match(store, workload))
    await first.stop()

    await h.publish_all(js, workload.mixed(1000))  # while nobody consumes
    await asyncio.sleep(0.5)
    assert not await h.counters_match(store, workload)  # nobody applied them

    second = await start_app()

    async def caught_up() -> bool:
        return handled([second]) >= 1000

    await eventually(caught_up, within_s=90, every_s=0.1)
    assert await h.counters_match(store, workload)
    await asyncio.sleep(1.0)
    assert handled([second]) == 1000  # the 100 early ones were acked: not seen again
    assert await h.counters_match(store, workload)


async def test_late_and_redelivered_events_never_roll_the_board_back(store: RedisReadModel) -> None:
    movie_id, screening_id, reservation_id, review_id = h.new_id(), h.new_id(), h.new_id(), h.new_id()
    seats = ["A1", "A2"]
    in_order = [
        h.movie_registered(movie_id, "Old title"),
        h.movie_updated(movie_id, 2, "New title"),
        h.screening_scheduled(screening_id, movie_id, hall="Hall 1"),
        h.screening_rescheduled(screening_id, movie_id, 2, "Hall 9"),
        h.reservation_confirmed(reservation_id, screening_id, movie_id, seats),
        h.reservation_cancelled(reservation_id, screening_id, movie_id, seats),
        h.review_posted(review_id, movie_id, 5),
        h.review_deleted(review_id, movie_id, 5),
        h.review_posted(h.new_id(), movie_id, 3),
    ]

    async def apply(envelope: EventEnvelope, model: RedisReadModel) -> str:
        event = to_domain(env.unwrap(envelope))
        assert event is not None
        return await model.apply(plan_for(event, meta_of(envelope)))

    for envelope in in_order:
        assert await apply(envelope, store) == "applied"
    expected = await store.dump()
    # Every event again (a redelivery), then the older ones late: nothing changes, all stale.
    for envelope in [*in_order, *in_order[::-2]]:
        assert await apply(envelope, store) == "stale"
    assert await store.dump() == expected

    # Any order, with duplicates, into fresh models: the same board as in order.
    documents = await store.board_documents()
    assert documents.movies[movie_id]["title"] == "New title"
    assert documents.screenings[screening_id]["hall"] == "Hall 9"
    assert documents.screenings[screening_id]["total_seats"] == 100  # from the scheduled event
    assert documents.taken.get(screening_id, 0) == 0
    assert (documents.reviews[f"{movie_id}:n"], documents.reviews[f"{movie_id}:sum"]) == (1, 3)
    rng = random.Random(5)
    for attempt in range(20):
        shuffled = in_order + rng.sample(in_order, 4)
        rng.shuffle(shuffled)
        other = RedisReadModel(store._r, f"{store.prefix}-shuffle{attempt}")
        await other.ensure_initialised()
        for envelope in shuffled:
            await apply(envelope, other)
        assert await other.dump() == expected, f"order {[e.type for e in shuffled]}"
        await other.drop_generation(1)


async def test_republished_and_out_of_order_events_through_nats(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel
) -> None:
    movie_id, screening_id, reservation_id = h.new_id(), h.new_id(), h.new_id()
    seats = ["A1", "A2", "A3"]
    confirmed = h.reservation_confirmed(reservation_id, screening_id, movie_id, seats)
    cancelled = h.reservation_cancelled(reservation_id, screening_id, movie_id, seats)
    # A relay that republishes after the duplicate window sends the same event under a new id.
    republished = EventEnvelope()
    republished.CopyFrom(confirmed)
    republished.id = h.new_id()
    app = await start_app()
    await h.publish_in_order(js, [h.screening_scheduled(screening_id, movie_id), cancelled, confirmed, republished])

    async def all_seen() -> bool:
        assert app.handler is not None
        return sum(app.handler.outcomes.values()) == 4

    await eventually(all_seen)
    assert app.handler is not None
    assert app.handler.outcomes == {"applied": 2, "stale": 2, "ignored": 0}
    documents = await store.board_documents()
    assert documents.taken.get(screening_id, 0) == 0  # the late confirmation took no seats back


async def test_a_poison_event_is_parked_and_does_not_block_the_stream(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel
) -> None:
    movie_id = h.new_id()
    app = await start_app()
    await js.publish("cinema.movie.registered", b"\x00\xffnot an envelope", stream="CINEMA_MOVIE")
    broken = h.movie_registered(h.new_id())
    broken.data = b"\xff\xff\xff"  # an envelope whose payload does not decode
    await js.publish("cinema.movie.registered", broken.SerializeToString(), stream="CINEMA_MOVIE")
    await h.publish_in_order(js, [h.movie_registered(movie_id, "After the poison")])

    async def applied() -> bool:
        return movie_id in (await store.board_documents()).movies

    await eventually(applied)
    sub = await js.pull_subscribe(
        "cinema.deadletter.viewpage", durable="vp-dead-letter-check", stream=DEAD_LETTER_STREAM
    )
    parked = await sub.fetch(2, timeout=5)
    assert len(parked) == 2
    for msg in parked:
        assert msg.headers is not None
        assert msg.headers["Cinema-Dead-Letter-Consumer"] == "viewpage"
        assert msg.headers["Cinema-Dead-Letter-Error"].startswith("undecodable")
    assert app.handler is not None
    assert app.handler.outcomes["applied"] == 1


async def test_event_to_view_lag_under_a_500_events_per_second_feed(
    start_app: AppFactory, js: JetStreamContext, store: RedisReadModel
) -> None:
    lags: list[float] = []
    await start_app(on_applied=lambda envelope, lag: lags.append(lag))
    workload = h.Workload()
    await h.publish_in_order(js, workload.catalog)

    async def catalog_applied() -> bool:
        return len(lags) == len(workload.catalog)

    await eventually(catalog_applied)
    lags.clear()
    rate, seconds = 500, 8
    feed = workload.mixed(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for tick in range(seconds * 10):  # 50 events every 100 ms, each stamped when published
        batch = feed[tick * 50 : (tick + 1) * 50]
        for envelope in batch:
            envelope.time.GetCurrentTime()
        await h.publish_all(js, batch, concurrency=8)
        await asyncio.sleep(max(0.0, start + (tick + 1) * 0.1 - loop.time()))
    fed_in = loop.time() - start

    async def all_applied() -> bool:
        return len(lags) >= len(feed)

    await eventually(all_applied, within_s=60)
    assert len(lags) == len(feed)
    assert await h.counters_match(store, workload)
    cuts = statistics.quantiles(lags, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    print(
        f"\nlag under {len(feed) / fed_in:.0f} events/s for {fed_in:.1f} s (one replica): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lags) * 1000:.1f} ms"
    )
    assert p99 < 5000  # generous: tells "keeps up" from "falls behind"
