"""A review event the movie service can never apply (it names a movie that catalog never had),
on real NATS JetStream through the kit's durable consumer: handled once, counted, terminated in
its stream -- neither redelivered nor copied to the dead-letter stream -- while the events
around it are handled as usual. (Review no longer announces such events for reviews customers
post: tests/integration/review/test_review_catalog.py; this is the consumer's own guard.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1 import events_pb2
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.events.consumer import EventConsumer
from services.movie.entrypoints.review_consumer import consumer_settings
from services.movie.service_layer.reviews import MovieNotKnown
from tests.support.servers import Server

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2)
    stream = nc.jetstream()
    await jetstream.ensure_streams(stream)
    yield stream
    await nc.close()


def posted(movie_id: str) -> EventEnvelope:
    review_id = str(uuid.uuid4())
    event = events_pb2.ReviewPosted(review_id=review_id, movie_id=movie_id, customer_id="c", rating=4, text="ok")
    return env.wrap(event, source="//cinema/review", subject=review_id, aggregate_id=review_id, aggregate_version=1)


async def dead_letters(js: JetStreamContext, durable: str) -> int:
    try:
        info = await js.stream_info("CINEMA_DEAD_LETTER", subjects_filter=f"cinema.deadletter.{durable}")
    except NotFoundError:
        return 0
    return sum((info.state.subjects or {}).values())


async def test_an_event_about_a_movie_nobody_has_is_set_aside_not_dead_lettered(js: JetStreamContext) -> None:
    known = str(uuid.uuid4())
    handled: list[str] = []
    good, stray, after = posted(known), posted(str(uuid.uuid4())), posted(known)
    ours = {good.id, stray.id, after.id}

    async def handler(envelope: EventEnvelope, event: object) -> None:
        if envelope.id not in ours:
            return  # the stream is shared with the session's other tests: their events are not this test's
        assert isinstance(event, events_pb2.ReviewPosted)
        handled.append(envelope.id)
        if event.movie_id != known:  # what movie's use case raises for a movie its store lacks
            raise MovieNotKnown(f"review {event.review_id} is about movie {event.movie_id}")

    durable = f"movie-test-{uuid.uuid4().hex[:6]}"
    settings = consumer_settings(durable)
    settings.backoff_s = (0.1,)
    before = REGISTRY.get_sample_value(
        "cinema_events_unapplied_total", {"consumer": durable, "type": "cinema.review.v1.ReviewPosted"}
    )
    for event in (good, stray, after):
        await jetstream.publish(js, event)
    consumer = EventConsumer(js, settings, handler)
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                info = await js.consumer_info(settings.stream, durable)
            except NotFoundError:
                continue
            if info.num_pending == 0 and info.num_ack_pending == 0 and after.id in handled:
                break
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await js.delete_consumer(settings.stream, durable)

    assert handled.count(stray.id) == 1  # once: no redelivery of what can never apply
    assert {good.id, after.id} <= set(handled)
    assert await dead_letters(js, durable) == 0
    counted = REGISTRY.get_sample_value(
        "cinema_events_unapplied_total", {"consumer": durable, "type": "cinema.review.v1.ReviewPosted"}
    )
    assert (counted or 0) - (before or 0) == 1
