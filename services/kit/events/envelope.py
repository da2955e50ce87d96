"""The CloudEvents-shaped envelope every domain event travels in.

`wrap` puts an event message into an `EventEnvelope` (id, source, type = the message's full
name, time, subject = the correlation key, the aggregate's id and version for order-safe
consumers, and the W3C trace context of the current span); `unwrap` turns an envelope back
into the event message, finding its class by the type, so consumers need no registry.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf import symbol_database
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit import telemetry
from services.kit.events.naming import EventName, parse_full_name

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"


class UndecodableEvent(ValueError):
    """An envelope or its payload cannot be decoded: a poison message for the dead-letter stream."""


def wrap(
    event: Message,
    *,
    source: str,
    subject: str,
    aggregate_id: str,
    aggregate_version: int,
    event_id: str | None = None,
    time: datetime | None = None,
) -> EventEnvelope:
    """Envelope `event`; `subject` is the correlation key (e.g. the reservation id)."""
    when = Timestamp()
    when.FromDatetime(time or datetime.now(UTC))
    envelope = EventEnvelope(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event.DESCRIPTOR.full_name,
        spec_version=SPEC_VERSION,
        time=when,
        subject=subject,
        data_content_type=CONTENT_TYPE,
        data=event.SerializeToString(deterministic=True),
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
    )
    carrier = telemetry.inject_headers({})
    if "traceparent" in carrier:
        envelope.traceparent = carrier["traceparent"]
    if "tracestate" in carrier:
        envelope.tracestate = carrier["tracestate"]
    return envelope


# The domain name of an envelope's subject (its correlation key), by the event's name: payment
# events are keyed by the reservation they pay for; movie events by the movie or the screening.
_KEY_BY_NAME_PREFIX = (
    ("Reservation", "reservation_id"),
    ("Payment", "reservation_id"),
    ("Review", "review_id"),
    ("Screening", "screening_id"),
    ("Movie", "movie_id"),
)


def correlation_field(envelope: EventEnvelope) -> str | None:
    """What the envelope's subject is, in the domain's words (`reservation_id`, `review_id` ...)."""
    try:
        name = parse_full_name(envelope.type).name
    except ValueError:
        return None
    return next((key for prefix, key in _KEY_BY_NAME_PREFIX if name.startswith(prefix)), None)


def correlation_fields(envelope: EventEnvelope) -> dict[str, str]:
    """`{"reservation_id": subject}` (or the like) for logs and span attributes; {} when unknown."""
    key = correlation_field(envelope)
    return {key: envelope.subject} if key and envelope.subject else {}


def event_name(envelope: EventEnvelope) -> EventName:
    return parse_full_name(envelope.type)


def unwrap(envelope: EventEnvelope) -> Message:
    """The event message inside `envelope` (its class found by the envelope's type)."""
    try:
        cls = symbol_database.Default().GetSymbol(envelope.type)
    except KeyError:
        raise UndecodableEvent(f"unknown event type {envelope.type!r}") from None
    event: Message = cls()
    try:
        event.ParseFromString(envelope.data)
    except DecodeError as exc:
        raise UndecodableEvent(f"payload of {envelope.type} {envelope.id} does not decode: {exc}") from exc
    return event


def decode(data: bytes) -> EventEnvelope:
    envelope = EventEnvelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError as exc:
        raise UndecodableEvent(f"not an event envelope: {exc}") from exc
    if not envelope.id or not envelope.type:
        raise UndecodableEvent("not an event envelope: no id or type")
    return envelope
