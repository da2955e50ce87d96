"""Review domain events as cinema.review.v1 protobuf events in the kit's envelope.

Envelope subject = aggregate id = the review id (the correlation key the movie service counts
by); aggregate version = the review's version after the change (posted 1, deleted 2), so the
events of one review are strictly ordered. Subjects on the wire: `cinema.review.posted`,
`cinema.review.deleted` (derived by the kit from the message names).
"""

from __future__ import annotations

from google.protobuf.message import Message

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1 import events_pb2
from services.kit.events import envelope as kit_envelope
from services.review.domain.events import DomainEvent, ReviewDeleted, ReviewPosted

SOURCE = "//cinema/review"


def event_message(event: DomainEvent) -> Message:
    """The wire message of a domain event (protos/cinema/review/v1/events.proto)."""
    if isinstance(event, ReviewPosted):
        return events_pb2.ReviewPosted(
            review_id=event.review_id,
            movie_id=event.movie_id,
            customer_id=event.customer_id,
            rating=event.rating,
            text=event.text,
        )
    if isinstance(event, ReviewDeleted):
        return events_pb2.ReviewDeleted(
            review_id=event.review_id,
            movie_id=event.movie_id,
            customer_id=event.customer_id,
            rating=event.rating,
        )
    raise TypeError(f"not a review event: {event!r}")


def envelope_for(event: DomainEvent) -> EventEnvelope:
    return kit_envelope.wrap(
        event_message(event),
        source=SOURCE,
        subject=event.review_id,
        aggregate_id=event.review_id,
        aggregate_version=event.version,
        time=event.occurred_at,
    )
