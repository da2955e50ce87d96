"""Publishing envelopes to NATS JetStream, and the streams they land in.

One stream per context (`CINEMA_<CONTEXT>` holding `cinema.<context>.>`), file storage, and a
duplicate window: the publish carries `Nats-Msg-Id` = the event id, so a relay that
republishes after a crash (it cannot know whether its last publish landed) is deduplicated
by the server. The trace context rides in the W3C `traceparent` header as well as in the
envelope, so consumers can continue the trace without decoding the payload first.
"""

from __future__ import annotations

import asyncio

from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, ServerError

from cinema.events.v1.envelope_pb2 import EventEnvelope
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


async def publish(js: JetStreamContext, envelope: EventEnvelope, ack_timeout_s: float = 5.0) -> PubAck:
    """Publish and wait for the stream's acknowledgement (`ack.duplicate` when already there)."""
    name = parse_full_name(envelope.type)
    return await js.publish(
        name.subject,
        envelope.SerializeToString(deterministic=True),
        timeout=ack_timeout_s,
        stream=name.stream,
        headers=headers_for(envelope),
    )
