"""Durable pull consumers: the one way a service consumes events.

A consumer is named after the subscribing service (and the stream), so every replica of the
service shares it and JetStream hands each message to one replica. Acks are explicit; a
handler failure is redelivered with backoff (`nak` with a delay) up to `max_deliver` times,
then parked in the dead-letter stream with the error; an undecodable (poison) message is
parked at once. A handler that knows an event can never be applied (it names something that
does not exist, it breaks a rule no retry can change) raises `Unappliable`: the event is counted
(`cinema_events_unapplied_total`), logged at INFO and terminated at once -- it stays in its own
stream, not redelivered, and does not go to the dead-letter stream, which is for failures an
operator must look at (an event a customer could cause must never fill it). Handlers must be
idempotent (the inbox), because an ack can be lost when a process dies, and a late ack can land
after a redelivery to another replica.

Each message is handled in a CONSUMER span whose parent is the event's creation context (the
NATS `traceparent` header: the span that wrote the event), with the event's correlation key
bound to the log lines written while handling it. The consumer's backlog (JetStream's
`num_pending`, `num_ack_pending`, `num_redelivered`) is sampled every `lag_sample_s` into
gauges while messages flow, once when the consumer runs dry, then every `idle_lag_sample_s`.

Fetching: while messages flow, batches of up to `batch` (a batch waits at most
`fetch_timeout_s` to fill). After a fetch that found nothing, the consumer waits for the next
message with one long pull of a single message (`idle_fetch_s`), which returns the moment a
message arrives: an idle consumer costs one request per `idle_fetch_s` instead of one per
`fetch_timeout_s`, and the first event after a quiet spell is handled at once. `stop()`
interrupts a pending fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit import telemetry
from services.kit.aio import honour_cancellation, wait_event
from services.kit.events import envelope as env
from services.kit.events.naming import parse_full_name, stream_for
from services.kit.events.outcomes import Unappliable
from services.kit.logging import bind_correlation

log = logging.getLogger("cinema.consumer")
tracer = trace.get_tracer("cinema.events")

Handler = Callable[[EventEnvelope, Message], Awaitable[None]]

CONSUMED = Counter("cinema_events_consumed_total", "Events handled by a consumer", ["consumer", "type", "outcome"])
UNAPPLIED = Counter(
    "cinema_events_unapplied_total",
    "Events a handler found it can never apply (terminated in their stream, not dead-lettered)",
    ["consumer", "type"],
)
DEAD_LETTERED = Counter("cinema_events_dead_lettered_total", "Events parked in the dead-letter stream", ["consumer"])
REDELIVERED = Counter("cinema_events_redelivered_total", "Deliveries of an event after its first", ["consumer"])
PENDING = Gauge(
    "cinema_consumer_pending_messages",
    "Messages of the stream not yet delivered to the consumer (JetStream num_pending, sampled)",
    ["consumer", "stream"],
)
ACK_PENDING = Gauge(
    "cinema_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged (JetStream num_ack_pending, sampled)",
    ["consumer", "stream"],
)
REDELIVERED_PENDING = Gauge(
    "cinema_consumer_redelivered_messages",
    "Messages of the consumer being redelivered right now (JetStream num_redelivered, sampled)",
    ["consumer", "stream"],
)
CONSUMER_LAG = Histogram(
    "cinema_event_lag_seconds",
    "Time from an event's creation to its handling",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


@dataclass
class ConsumerSettings:
    durable: str  # e.g. "payment" (the service) for the stream CINEMA_RESERVATION
    context: str  # the stream's context, e.g. "reservation"
    subjects: Sequence[str]  # e.g. ["cinema.reservation.cancelled"]
    max_deliver: int = 6
    backoff_s: Sequence[float] = field(default_factory=lambda: (0.5, 2.0, 5.0, 15.0, 30.0))
    ack_wait_s: float = 30.0
    batch: int = 64
    # While messages flow: how long a batch may wait to fill. nats-py returns a batch only when it
    # is full or this time is up, so it is added to the lag of every event of a partial batch
    # (at 1 s the board lagged ~1 s p99 at moderate load); short, then the long single pull.
    fetch_timeout_s: float = 0.05
    # When idle: the long pull for the next message. It also bounds how long a consumer waits on a
    # pull the server lost (a NATS restart) before it asks again.
    idle_fetch_s: float = 5.0
    deliver_all: bool = True  # a new consumer starts at the stream's beginning (catch up on history)
    lag_sample_s: float = 5.0  # how often the consumer's backlog is read from JetStream (busy)
    idle_lag_sample_s: float = 60.0  # the same while idle (the backlog was 0 when it went idle)

    @property
    def stream(self) -> str:
        return stream_for(self.context)

    @classmethod
    def of_events(cls, durable: str, events: Sequence[type[Message]]) -> ConsumerSettings:
        """A consumer of these event messages, all of one context (its stream and subjects)."""
        names = [parse_full_name(event.DESCRIPTOR.full_name) for event in events]
        contexts = {name.context for name in names}
        if len(contexts) != 1:
            raise ValueError(f"one consumer reads one context's stream, not {sorted(contexts)}")
        return cls(durable=durable, context=contexts.pop(), subjects=[name.subject for name in names])


class EventConsumer:
    def __init__(self, js: JetStreamContext, settings: ConsumerSettings, handler: Handler) -> None:
        self._js = js
        self._s = settings
        self._handler = handler
        self._stopping = asyncio.Event()
        self._sampled_at = float("-inf")
        # Shown at 0 from the start, so an alert on an increase has a series before the first one.
        DEAD_LETTERED.labels(settings.durable)
        REDELIVERED.labels(settings.durable)

    def stop(self) -> None:
        self._stopping.set()

    def consumer_config(self) -> ConsumerConfig:
        subjects = list(self._s.subjects)
        return ConsumerConfig(
            durable_name=self._s.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self._s.deliver_all else DeliverPolicy.NEW,
            max_deliver=self._s.max_deliver,
            ack_wait=self._s.ack_wait_s,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
            max_ack_pending=1000,
        )

    async def run(self) -> None:
        """Fetch and handle until stopped; survives NATS restarts (the client reconnects)."""
        sub = None
        idle = False
        while not self._stopping.is_set():
            try:
                if sub is None:
                    await self._js.add_consumer(self._s.stream, self.consumer_config())
                    sub = await self._js.pull_subscribe_bind(durable=self._s.durable, stream=self._s.stream)
                await self._sample_backlog(self._s.idle_lag_sample_s if idle else self._s.lag_sample_s)
                try:
                    if idle:
                        msgs = await self._fetch(sub, 1, self._s.idle_fetch_s)
                    else:
                        msgs = await self._fetch(sub, self._s.batch, self._s.fetch_timeout_s)
                except TimeoutError:  # nats-py raises on an empty fetch
                    if not idle:
                        idle = True
                        self._sampled_at = float("-inf")  # show the drained backlog once
                    continue
                idle = False
                honour_cancellation()  # nats-py may have swallowed one (see services.kit.aio)
                for msg in msgs:
                    await self.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer %s on %s: %s; retrying", self._s.durable, self._s.stream, exc)
                sub = None
                await wait_event(self._stopping, 1.0)

    async def _fetch(self, sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float) -> list[Msg]:
        """`sub.fetch`, or [] as soon as the consumer is stopped (the pending fetch is cancelled:
        a message it was about to receive stays unacknowledged and is redelivered)."""
        fetch = asyncio.ensure_future(sub.fetch(batch, timeout=timeout_s))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
        if not fetch.done():
            await asyncio.wait({fetch})  # let it unwind; whatever it ends with is dropped
            if not fetch.cancelled():
                fetch.exception()  # retrieved, so asyncio does not log it as forgotten
            return []
        return fetch.result()

    async def _sample_backlog(self, every_s: float) -> None:
        """Read the consumer's counts from JetStream when due (one request per `every_s`)."""
        if time.monotonic() - self._sampled_at < every_s:
            return
        self._sampled_at = time.monotonic()
        try:
            info = await self._js.consumer_info(self._s.stream, self._s.durable)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a metric must never stop the consuming: try again next time
            log.debug("consumer %s: could not read its info: %s", self._s.durable, exc)
            return
        honour_cancellation()  # nats-py may have swallowed one (see services.kit.aio)
        labels = (self._s.durable, self._s.stream)
        PENDING.labels(*labels).set(info.num_pending or 0)
        ACK_PENDING.labels(*labels).set(info.num_ack_pending or 0)
        REDELIVERED_PENDING.labels(*labels).set(info.num_redelivered or 0)

    async def handle(self, msg: Msg) -> None:
        delivered = msg.metadata.num_delivered
        try:
            envelope = env.decode(msg.data)
            event = env.unwrap(envelope)
        except env.UndecodableEvent as exc:
            await self._park(msg, f"undecodable: {exc}")
            CONSUMED.labels(self._s.durable, "unknown", "poison").inc()
            return
        if delivered > 1:
            REDELIVERED.labels(self._s.durable).inc()
        keys = env.correlation_fields(envelope)
        parent = telemetry.extract_context(msg.headers or {})
        token = otel_context.attach(parent)
        try:
            with (
                tracer.start_as_current_span(f"consume {envelope.type}", kind=trace.SpanKind.CONSUMER) as span,
                bind_correlation(envelope.subject, **keys),
            ):
                span.set_attribute("messaging.system", "nats")
                span.set_attribute("messaging.operation.type", "process")
                span.set_attribute("messaging.destination.name", msg.subject)
                span.set_attribute("messaging.message.id", envelope.id)
                span.set_attribute("messaging.consumer.group.name", self._s.durable)
                span.set_attribute("messaging.message.delivery_count", delivered)
                for key, value in keys.items():
                    span.set_attribute(f"cinema.{key}", value)
                try:
                    await self._handler(envelope, event)
                except Unappliable as exc:
                    await self._set_aside(msg, envelope, exc)
                    return
                except Exception as exc:
                    span.record_exception(exc)
                    await self._retry_or_park(msg, envelope, delivered, exc)
                    return
                await msg.ack()
                CONSUMED.labels(self._s.durable, envelope.type, "ok").inc()
                CONSUMER_LAG.labels(self._s.durable).observe(max(0.0, time.time() - envelope.time.ToSeconds()))
        finally:
            otel_context.detach(token)

    async def _set_aside(self, msg: Msg, envelope: EventEnvelope, exc: Unappliable) -> None:
        log.info(
            "event %s (%s, stream sequence %d) cannot be applied; set aside: %s",
            envelope.id, envelope.type, msg.metadata.sequence.stream, exc,
        )  # fmt: skip
        await msg.term()
        UNAPPLIED.labels(self._s.durable, envelope.type).inc()
        CONSUMED.labels(self._s.durable, envelope.type, "unapplied").inc()

    async def _retry_or_park(self, msg: Msg, envelope: EventEnvelope, delivered: int, exc: Exception) -> None:
        if delivered >= self._s.max_deliver:
            log.error("event %s (%s) failed %d times; parking it: %s", envelope.id, envelope.type, delivered, exc)
            await self._park(msg, f"handler failed {delivered} times: {exc!r}")
            CONSUMED.labels(self._s.durable, envelope.type, "dead_lettered").inc()
            return
        delay = self._s.backoff_s[min(delivered - 1, len(self._s.backoff_s) - 1)]
        log.warning(
            "event %s (%s) failed (delivery %d), retry in %.1f s: %s", envelope.id, envelope.type, delivered, delay, exc
        )
        await msg.nak(delay=delay)
        CONSUMED.labels(self._s.durable, envelope.type, "retried").inc()

    async def _park(self, msg: Msg, error: str) -> None:
        """Copy the message to the dead-letter stream with why, then take it off this consumer."""
        # Keep our own and the trace headers; drop the server's (Nats-Msg-Id would dedupe the
        # copy, Nats-Expected-Stream would make the dead-letter publish fail).
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        headers.update(
            {
                "Cinema-Dead-Letter-Error": error[:1000],
                "Cinema-Dead-Letter-Consumer": self._s.durable,
                "Cinema-Original-Subject": msg.subject,
                "Cinema-Original-Stream": self._s.stream,
                "Cinema-Original-Sequence": str(msg.metadata.sequence.stream),
            }
        )
        await self._js.publish(f"cinema.deadletter.{self._s.durable}", msg.data, headers=headers)
        DEAD_LETTERED.labels(self._s.durable).inc()
        await msg.term()


async def run_consumers(consumers: Sequence[EventConsumer]) -> None:
    await asyncio.gather(*(c.run() for c in consumers))
