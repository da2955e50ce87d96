"""Consumer of the movie context's events: keeps review's replica of the catalog.

A durable pull consumer `review` on the movie stream (`cinema.movie.registered`,
`cinema.movie.deleted`), shared by every replica of the service. Applying an event is an insert
that a repeat cannot change (services.review.adapters.catalog): no inbox needed. It starts at
the stream's beginning, so a new deployment learns the whole catalog.
"""

from __future__ import annotations

from google.protobuf.message import Message
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie_events
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.review.service_layer import catalog
from services.review.service_layer.ports import MovieCatalog

DURABLE = "review"
MOVIE_EVENTS: tuple[type[Message], ...] = (movie_events.MovieRegistered, movie_events.MovieDeleted)


def consumer_settings(durable: str = DURABLE) -> ConsumerSettings:
    return ConsumerSettings.of_events(durable, MOVIE_EVENTS)


class MovieEventHandler:
    def __init__(self, movies: MovieCatalog) -> None:
        self._movies = movies

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        if isinstance(event, movie_events.MovieRegistered):
            await catalog.on_movie_registered(event.movie_id, self._movies)
        elif isinstance(event, movie_events.MovieDeleted):
            await catalog.on_movie_deleted(event.movie_id, self._movies)


def movie_consumer(js: JetStreamContext, movies: MovieCatalog, durable: str = DURABLE) -> EventConsumer:
    return EventConsumer(js, consumer_settings(durable), MovieEventHandler(movies))
