"""Contract: who caused a state change (cinema.common.v1.Actor) on the events that carry it.

The field numbers and the enum are pinned (a consumer of an older build must keep decoding
them); what a producer writes is what each consumer reads (booking -> notification and payment,
payment -> notification, catalog -> booking), through the real codecs and once through a real
JetStream; an event from before attribution, or with a kind added later, reads as unattributed.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from cinema.common.v1 import actor_pb2
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie_events
from cinema.payment.v1 import events_pb2 as payment_events
from cinema.reservation.v1 import events_pb2 as reservation_events
from services.kit.actor import Actor
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.events.attribution import actor_message, actor_of
from services.movie.adapters.events import message_of as catalog_message
from services.movie.domain import events as catalog_domain
from services.notification.adapters.events import facts_of
from services.notification.domain.model import MessageKind, message_kind
from services.payment.adapters.outbox import event_message as payment_message
from services.payment.domain.events import PaymentRefunded
from services.payment.domain.values import Money as PaymentMoney
from services.reservation.adapters.outbox import event_message as booking_message
from services.reservation.domain.events import ReservationCancelled, ReservationFailed
from services.reservation.domain.reservation import LATE_PAYMENT, SCREENING_CANCELLED
from services.reservation.domain.screening import ScreeningDetails
from services.reservation.domain.values import Money, SeatLabel
from tests.support.servers import Server

NOW = datetime(2027, 3, 5, 18, 0, tzinfo=UTC)
DETAILS = ScreeningDetails("movie-1", "Metropolis", "Hall 2", datetime(2027, 3, 5, 19, 30, tzinfo=UTC))

# (message, field name, field number): a consumer built against these numbers must keep working.
ATTRIBUTED = [
    (reservation_events.ReservationCancelled, "cancelled_by", 12),
    (reservation_events.ReservationFailed, "failed_by", 7),
    (payment_events.PaymentRefunded, "cancelled_by", 6),
    (movie_events.ScreeningCancelled, "cancelled_by", 6),
    (movie_events.MovieDeleted, "deleted_by", 3),
]


@pytest.mark.parametrize(("message", "name", "number"), ATTRIBUTED)
def test_the_attribution_fields_are_actors_at_their_numbers(message: type[Message], name: str, number: int) -> None:
    field = message.DESCRIPTOR.fields_by_name[name]
    assert field.number == number
    assert field.type == FieldDescriptor.TYPE_MESSAGE
    assert field.message_type is not None and field.message_type.full_name == "cinema.common.v1.Actor"


def test_the_actor_kinds_are_pinned_and_zero_means_not_recorded() -> None:
    kinds = {v.name: v.number for v in actor_pb2.ActorKind.DESCRIPTOR.values}
    assert kinds == {
        "ACTOR_KIND_UNSPECIFIED": 0,
        "ACTOR_KIND_CUSTOMER": 1,
        "ACTOR_KIND_MANAGER": 2,
        "ACTOR_KIND_SYSTEM": 3,
    }
    fields = {f.name: f.number for f in actor_pb2.Actor.DESCRIPTOR.fields}
    assert fields == {"kind": 1, "id": 2, "cause": 3}


def cancellation(by: Actor, reason: str, *, refund_only: bool = False) -> ReservationCancelled:
    return ReservationCancelled(
        reservation_id=str(uuid.uuid4()),
        customer_id="alice",
        customer_email="alice@example.com",
        screening_id="screening-1",
        screening=DETAILS,
        seats=(SeatLabel("A", 1),),
        amount=Money(1200, "EUR"),
        payment_id="pay-1",
        cancelled_by=by,
        reason=reason,
        occurred_at=NOW,
        refund_only=refund_only,
    )


def as_received(message: reservation_events.ReservationCancelled) -> EventEnvelope:
    """The message as a consumer receives it: enveloped, serialized, decoded."""
    envelope = env.wrap(
        message,
        source="//cinema/reservation",
        subject=message.reservation_id,
        aggregate_id=message.reservation_id,
        aggregate_version=2,
    )
    return env.decode(envelope.SerializeToString())


@pytest.mark.parametrize(
    ("actor", "reason", "kind"),
    [
        (Actor.customer("alice"), "plans changed", MessageKind.CANCELLED_BY_CUSTOMER),
        (Actor.manager("manager-1"), "hall flooded", MessageKind.CANCELLED_BY_CINEMA),
        (Actor.system(SCREENING_CANCELLED), "projector broke", MessageKind.SCREENING_CANCELLED),
        (Actor.system(LATE_PAYMENT), LATE_PAYMENT, None),
    ],
)
def test_what_booking_writes_is_what_notification_reads(actor: Actor, reason: str, kind: MessageKind | None) -> None:
    message = booking_message(cancellation(actor, reason))
    assert isinstance(message, reservation_events.ReservationCancelled)
    received = as_received(message)
    facts = facts_of(received, env.unwrap(received))
    assert facts is not None
    assert (facts.actor, facts.reason) == (actor, reason)
    assert message_kind(facts) is kind


def test_what_booking_writes_is_what_payment_reads_and_passes_on_to_notification() -> None:
    message = booking_message(cancellation(Actor.manager("manager-1"), "hall flooded"))
    assert isinstance(message, reservation_events.ReservationCancelled)
    by = actor_of(message.cancelled_by)  # as payment's consumer reads it
    assert by == Actor.manager("manager-1")
    refunded = payment_message(
        PaymentRefunded(
            "pay-1", message.reservation_id, "alice", "alice@example.com", PaymentMoney(1200, "EUR"), NOW, by
        )
    )
    assert isinstance(refunded, payment_events.PaymentRefunded)
    received = env.decode(
        env.wrap(
            refunded, source="cinema/payment", subject=message.reservation_id, aggregate_id="pay-1", aggregate_version=2
        ).SerializeToString()
    )
    facts = facts_of(received, env.unwrap(received))
    assert facts is not None and facts.actor == Actor.manager("manager-1")


def test_a_failure_is_the_systems_with_its_cause() -> None:
    cause = "PAYMENT_NOT_COMPLETED"
    failed = ReservationFailed("r-1", "alice", "", "screening-1", (SeatLabel("A", 1),), cause, NOW, Actor.system(cause))
    message = booking_message(failed)
    assert isinstance(message, reservation_events.ReservationFailed)
    assert (message.failed_by.kind, message.failed_by.id, message.failed_by.cause) == (
        actor_pb2.ACTOR_KIND_SYSTEM,
        "system",
        "PAYMENT_NOT_COMPLETED",
    )


def test_the_catalog_says_which_manager_cancelled_a_screening() -> None:
    cancelled = catalog_domain.ScreeningCancelled(
        aggregate_id="screening-1",
        version=2,
        movie_id="movie-1",
        movie_title="Metropolis",
        starts_at=NOW,
        reason="projector broke",
        cancelled_by=Actor.manager("manager-1"),
    )
    message = catalog_message(cancelled)
    assert isinstance(message, movie_events.ScreeningCancelled)
    assert actor_of(message.cancelled_by) == Actor.manager("manager-1")


def test_an_event_from_before_attribution_or_with_a_later_kind_reads_unattributed() -> None:
    old = reservation_events.ReservationCancelled(reservation_id="r-1", customer_id="alice", reason="plans changed")
    received = as_received(reservation_events.ReservationCancelled.FromString(old.SerializeToString()))
    facts = facts_of(received, env.unwrap(received))
    assert facts is not None and facts.actor is None
    assert message_kind(facts) is MessageKind.CANCELLED  # free text from an unknown hand: the neutral message
    later = reservation_events.ReservationCancelled(reservation_id="r-1", customer_id="alice")
    later.cancelled_by.kind = 9  # type: ignore[assignment]  # a kind this build does not know (open enum)
    later.cancelled_by.id = "robot-1"
    assert actor_of(reservation_events.ReservationCancelled.FromString(later.SerializeToString()).cancelled_by) is None
    assert actor_message(Actor.customer("alice")) == actor_pb2.Actor(kind=actor_pb2.ACTOR_KIND_CUSTOMER, id="alice")


@pytest.mark.integration
async def test_an_attributed_cancellation_reaches_a_consumer_through_jetstream(nats_server: Server) -> None:
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2, max_reconnect_attempts=0)
    js = nc.jetstream()
    durable = f"contract-attribution-{uuid.uuid4().hex[:8]}"
    try:
        await jetstream.ensure_streams(js)
        message = booking_message(cancellation(Actor.customer("alice"), "plans changed"))
        assert isinstance(message, reservation_events.ReservationCancelled)
        sub = await js.pull_subscribe(
            "cinema.reservation.cancelled",
            durable=durable,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW),
        )
        await jetstream.publish(
            js,
            env.wrap(
                message,
                source="//cinema/reservation",
                subject=message.reservation_id,
                aggregate_id=message.reservation_id,
                aggregate_version=2,
            ),
        )
        [msg] = await sub.fetch(1, timeout=5)  # the consumer started after the streams' older events
        await msg.ack()
        received = env.decode(msg.data)
        assert received.aggregate_id == message.reservation_id
        payload = env.unwrap(received)
        assert isinstance(payload, reservation_events.ReservationCancelled)
        assert actor_of(payload.cancelled_by) == Actor.customer("alice") and payload.reason == "plans changed"
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer("CINEMA_RESERVATION", durable)
        await nc.close()
