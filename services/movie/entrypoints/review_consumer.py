"""Consumer of the review context's events: keeps each movie's review count and rating.

A durable pull consumer `movie` on the review stream (`cinema.review.posted`,
`cinema.review.deleted`). The handler needs no inbox: each event is applied by review id as
one conditional update of the movie's document (services.movie.domain.reviews), so a
redelivered event, or one handled twice by two replicas, has no second effect. A review of a
movie this catalog does not know can never be applied: it is counted and set aside, not
retried and not dead-lettered (see services.movie.service_layer.reviews).
"""

from __future__ import annotations

from google.protobuf.message import Message
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1 import events_pb2 as review_events
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.movie.service_layer import reviews
from services.movie.service_layer.dependencies import CatalogDependencies

DURABLE = "movie"
REVIEW_EVENTS: tuple[type[Message], ...] = (review_events.ReviewPosted, review_events.ReviewDeleted)


def consumer_settings(durable: str = DURABLE) -> ConsumerSettings:
    return ConsumerSettings.of_events(durable, REVIEW_EVENTS)


class ReviewEventHandler:
    def __init__(self, deps: CatalogDependencies) -> None:
        self._deps = deps

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        if isinstance(event, review_events.ReviewPosted):
            await reviews.on_review_posted(event.movie_id, event.review_id, event.rating, self._deps)
        elif isinstance(event, review_events.ReviewDeleted):
            await reviews.on_review_deleted(event.movie_id, event.review_id, self._deps)


def review_consumer(js: JetStreamContext, deps: CatalogDependencies, durable: str = DURABLE) -> EventConsumer:
    return EventConsumer(js, consumer_settings(durable), ReviewEventHandler(deps))
