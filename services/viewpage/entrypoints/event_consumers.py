"""The board's durable consumers: one per followed stream, all named `viewpage`.

Every replica of the service binds the same durable consumers, so JetStream hands each event to
one replica; the apply is atomic and order-safe in Redis, so a redelivery (a lost ack, a late
ack after a redelivery to another replica) changes nothing. Undecodable events are parked in
the dead-letter stream by the kit's consumer; a store outage fails the handler, and the kit
redelivers with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, tzinfo

from google.protobuf.message import Message
from nats.js.client import JetStreamContext
from prometheus_client import Counter, Histogram

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.events import envelope as env
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.viewpage.adapters.events import CONTEXTS, meta_of, to_domain
from services.viewpage.service_layer.ports import BoardChangeFeed, Outcome, ReadModelStore
from services.viewpage.service_layer.projector import project

log = logging.getLogger(__name__)

DURABLE = "viewpage"

APPLIED = Counter("viewpage_events_total", "Events seen by the board, by outcome", ["context", "outcome"])
LAG = Histogram(
    "viewpage_event_lag_seconds",
    "Time from an event's creation to its application to the board",
    ["context"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

LagObserver = Callable[[EventEnvelope, float], None]


class BoardEventHandler:
    """The handler the kit's EventConsumer calls with each envelope and its decoded event."""

    def __init__(
        self,
        store: ReadModelStore,
        on_applied: LagObserver | None = None,
        changes: BoardChangeFeed | None = None,
        zone: tzinfo = UTC,
    ) -> None:
        self._store = store
        self._zone = zone
        self._on_applied = on_applied
        self._changes = changes
        self.outcomes: dict[str, int] = {"applied": 0, "stale": 0, "ignored": 0}

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        context = env.event_name(envelope).context
        board_event = to_domain(event)
        if board_event is None:
            self.outcomes["ignored"] += 1
            APPLIED.labels(context, "ignored").inc()
            return
        outcome: Outcome = await project(self._store, board_event, meta_of(envelope), self._changes, self._zone)
        lag = max(0.0, time.time() - envelope.time.ToNanoseconds() / 1e9)
        LAG.labels(context).observe(lag)
        APPLIED.labels(context, outcome).inc()
        self.outcomes[outcome] += 1
        if self._on_applied is not None:
            self._on_applied(envelope, lag)


def consumer_settings(context: str, batch: int = 64) -> ConsumerSettings:
    return ConsumerSettings(durable=DURABLE, context=context, subjects=[f"cinema.{context}.>"], batch=batch)


def board_consumers(js: JetStreamContext, handler: BoardEventHandler, batch: int = 64) -> list[EventConsumer]:
    return [EventConsumer(js, consumer_settings(context, batch), handler) for context in CONTEXTS]
