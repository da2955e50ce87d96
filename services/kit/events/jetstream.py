"""Publishing envelopes to NATS JetStream, and the streams they land in.

One stream per context (`CINEMA_<CONTEXT>` holding `cinema.<context>.>`), file storage, and a
duplicate window: the publish carries `Nats-Msg-Id` = the event id, so a relay that
republishes after a crash (it cannot know whether its last publish landed) is deduplicated
by the server.

Tracing: the envelope carries the context of the span that wrote the event (the request),
and the W3C `traceparent` header repeats it: that is the message's creation context, and each
consumer's span is its child (OpenTelemetry's messaging conventions). `publish` — run by the
outbox relay later, from another task — opens a PRODUCER span as a child of the same context,
so the request's trace shows the publish and every consumer beneath it.
"""

from __future__ import annotations

import asyncio

from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, ServerError
from opentelemetry import trace

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit import telemetry
from services.kit.events.envelope import correlation_fields
from services.kit.events.naming import (
    CONTEXTS,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECTS,
    parse_full_name,
    stream_for,
    stream_subjects,
)

DUPLICATE_WINDOW_S = 600.0  # longer than any relay restart we expect; costs memory per message id
HEADER_EVENT_TYPE = "Cinema-Event-Type"
STORE_BUSY = 10049
STORE_BUSY_ATTEMPTS = 25
HEADER_SUBJECT = "Cinema-Subject"

tracer = trace.get_tracer("cinema.events")


def stream_configs(contexts: tuple[str, ...] = CONTEXTS) -> list[StreamConfig]:
    configs = [
        StreamConfig(
            name=stream_for(ctx),
            subjects=stream_subjects(ctx),
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,  # kept for replay (the viewpage rebuilds from the start)
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        for ctx in contexts
    ]
    configs.append(StreamConfig(name=DEAD_LETTER_STREAM, subjects=DEAD_LETTER_SUBJECTS, storage=StorageType.FILE))
    return configs


async def ensure_streams(js: JetStreamContext, contexts: tuple[str, ...] = CONTEXTS) -> None:
    """Create the streams, or bring an existing one to this configuration (idempotent)."""
    for config in stream_configs(contexts):
        for attempt in range(STORE_BUSY_ATTEMPTS):
            try:
                await js.add_stream(config)
                break
            except BadRequestError:  # exists with another configuration
                await js.update_stream(config)
                break
            except ServerError as error:
                # "error creating store for stream" (10049): the server is still removing the
                # files of a stream of that name deleted a moment ago. It passes; try again.
                if error.err_code != STORE_BUSY or attempt == STORE_BUSY_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.2)


def headers_for(envelope: EventEnvelope) -> dict[str, str]:
    headers = {"Nats-Msg-Id": envelope.id, HEADER_EVENT_TYPE: envelope.type, HEADER_SUBJECT: envelope.subject}
    if envelope.traceparent:
        headers["traceparent"] = envelope.traceparent
    if envelope.tracestate:
        headers["tracestate"] = envelope.tracestate
    return headers


def envelope_context(envelope: EventEnvelope) -> dict[str, str]:
    """The trace context the envelope carries (that of the span which wrote the event)."""
    carrier = {"traceparent": envelope.traceparent} if envelope.traceparent else {}
    if envelope.tracestate:
        carrier["tracestate"] = envelope.tracestate
    return carrier


async def publish(js: JetStreamContext, envelope: EventEnvelope, ack_timeout_s: float = 5.0) -> PubAck:
    """Publish and wait for the stream's acknowledgement (`ack.duplicate` when already there),
    inside a PRODUCER span that continues the trace of the envelope (see the module's doc)."""
    name = parse_full_name(envelope.type)
    parent = telemetry.extract_context(envelope_context(envelope))
    attributes: dict[str, str] = {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.destination.name": name.subject,
        "messaging.message.id": envelope.id,
        "cinema.event.type": envelope.type,
    }
    attributes.update({f"cinema.{key}": value for key, value in correlation_fields(envelope).items()})
    with tracer.start_as_current_span(
        f"publish {name.subject}", context=parent, kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        ack = await js.publish(
            name.subject,
            envelope.SerializeToString(deterministic=True),
            timeout=ack_timeout_s,
            stream=name.stream,
            headers=headers_for(envelope),
        )
        span.set_attribute("messaging.nats.stream.sequence", ack.seq)
        if ack.duplicate:
            span.set_attribute("messaging.nats.duplicate", True)
        return ack
