"""The web service's live updates without a browser: the fan-out's promises (a reconnecting page
gets exactly what it missed, or one RESYNC; a slow page never holds anyone up), and the change
feed from viewpage to the web over a real Redis (what viewpage announces is what the web relays).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.viewpage.adapters.redis_store import RedisChangeFeed, changes_channel
from services.viewpage.domain import events as ev
from services.viewpage.domain.projection import change_of
from services.web.adapters.redis_changes import RedisChangeSource, parse_change
from services.web.service_layer.fanout import (
    END,
    RESYNC,
    BoardChange,
    ChangeFanout,
    Notice,
    Sequenced,
    TooManyStreams,
)
from tests.support.servers import Server


def drain(queue: asyncio.Queue[Sequenced]) -> list[Sequenced]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def notices(queue: asyncio.Queue[Sequenced]) -> list[Notice]:
    return [item.notice for item in drain(queue)]


def test_a_reconnecting_page_gets_exactly_what_it_missed() -> None:
    fanout = ChangeFanout(max_subscribers=10, queue_size=8)
    seen_until = fanout.position
    fanout.publish(BoardChange("m1", "s1"))
    fanout.publish(BoardChange("m2"))
    back = fanout.subscribe(seen_until)
    assert [(i.seq, i.notice) for i in drain(back.queue)] == [(1, BoardChange("m1", "s1")), (2, BoardChange("m2"))]
    # a page that saw everything gets nothing again
    assert drain(fanout.subscribe(fanout.position).queue) == []
    # a new page (no id) starts from now
    fresh = fanout.subscribe()
    fanout.publish(BoardChange("m3"))
    assert notices(fresh.queue) == [BoardChange("m3")]


@pytest.mark.parametrize("last_id", ["other-1", "garbage", "{epoch}-99", "{epoch}-0"])
def test_an_unknown_or_forgotten_position_means_refetch_everything(last_id: str) -> None:
    fanout = ChangeFanout(max_subscribers=10, queue_size=8, history=2)
    for n in range(5):
        fanout.publish(BoardChange(f"m{n}"))
    # another process's id, nonsense, an id from the future, one older than the kept history
    page = fanout.subscribe(last_id.format(epoch=fanout.epoch))
    assert notices(page.queue) == [RESYNC]


def test_a_slow_page_collapses_into_one_resync_and_end_always_gets_in() -> None:
    fanout = ChangeFanout(max_subscribers=10, queue_size=3)
    slow, quick = fanout.subscribe(), fanout.subscribe()
    for n in range(5):
        fanout.publish(BoardChange(f"m{n}"))
        if n < 4:
            drain(quick.queue)
    assert notices(quick.queue) == [BoardChange("m4")]
    backlog = notices(slow.queue)
    assert backlog == [RESYNC, BoardChange("m4")]  # the backlog collapsed, then life went on
    for n in range(3):
        fanout.publish(BoardChange(f"x{n}"))
    fanout.close()
    assert notices(slow.queue) == [END]
    with pytest.raises(TooManyStreams):
        fanout.subscribe()


def test_streams_are_bounded() -> None:
    fanout = ChangeFanout(max_subscribers=2, queue_size=1)
    first, _ = fanout.subscribe(), fanout.subscribe()
    with pytest.raises(TooManyStreams):
        fanout.subscribe()
    fanout.unsubscribe(first)
    fanout.subscribe()


def test_only_two_short_ids_reach_a_browser() -> None:
    assert parse_change('{"movie_id": "m-1", "screening_id": ""}') == BoardChange("m-1", "")
    for junk in ("", "[]", "{}", '{"movie_id": 5}', '{"movie_id": "<script>"}', '{"movie_id": "' + "a" * 65 + '"}'):
        assert parse_change(junk) is None, junk


EVENTS: list[tuple[ev.BoardEvent, BoardChange]] = [
    (ev.MovieDetailsChanged("m1", "T", ("drama",), 90, ""), BoardChange("m1")),
    (ev.ScreeningScheduled("s1", "m1", "T", 90, "H", 5, 100, 1200, "EUR"), BoardChange("m1", "s1")),
    (ev.ScreeningCancelled("s1", "m1"), BoardChange("m1", "s1")),
    (ev.ReservationChanged("r1", "c1", "CONFIRMED", "s1", ("A1",), movie_id="m1"), BoardChange("m1", "s1")),
    (ev.ReservationChanged("r1", "c1", ev.RESERVATION_CANCELLED, "s1", ("A1",)), BoardChange("", "s1")),
    (ev.ReviewPosted("v1", "m1", 4), BoardChange("m1")),
]


@pytest.mark.integration
async def test_what_viewpage_announces_is_what_the_web_relays(redis_server: Server) -> None:
    prefix = "webtest"
    client = aioredis.from_url(redis_server.url)
    fanout = ChangeFanout(max_subscribers=4, queue_size=64)
    source = RedisChangeSource(redis_server.url, changes_channel(prefix), fanout)
    following = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.connected.wait(), 10)
        page = fanout.subscribe()
        feed = RedisChangeFeed(client, prefix)
        assert change_of(ev.PaymentChanged("p1", "r1", ev.PAYMENT_APPROVED)) is None  # only the customer sees it
        for event, _ in EVENTS:
            change = change_of(event)
            assert change is not None
            await feed.publish(change)
        relayed = [(await asyncio.wait_for(page.next(), 10)).notice for _ in EVENTS]
        assert relayed == [expected for _, expected in EVENTS]
        assert source.rejected == 0
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await client.aclose()
