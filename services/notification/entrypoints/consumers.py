"""The event consumers: ReservationConfirmed and ReservationCancelled (stream CINEMA_RESERVATION)
and PaymentRefunded (CINEMA_PAYMENT), on the durable `notification` that every replica shares.

The handler only records the notification (one row per event id) and wakes the delivery loop;
it acks once the row exists, so the stream moves on whatever the mail server does. A
redelivered or republished event finds its row and has no second effect. A store outage
fails the handler, and the kit's consumer retries it with backoff (then dead-letters it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import Message
from nats.js.client import JetStreamContext

from cinema.events.v1.envelope_pb2 import EventEnvelope
from services.kit.events.consumer import ConsumerSettings, EventConsumer
from services.notification.adapters.events import facts_of
from services.notification.service_layer.notifications import NotificationDependencies, record_notification

log = logging.getLogger(__name__)

DURABLE = "notification"
RESERVATION_SUBJECTS = ("cinema.reservation.confirmed", "cinema.reservation.cancelled")
PAYMENT_SUBJECTS = ("cinema.payment.refunded",)


class NotificationEventHandler:
    def __init__(self, deps: NotificationDependencies, on_recorded: Callable[[], None] = lambda: None) -> None:
        self._deps = deps
        self._on_recorded = on_recorded

    async def __call__(self, envelope: EventEnvelope, event: Message) -> None:
        facts = facts_of(envelope, event)
        if facts is None:
            log.info("ignoring %s: not an event customers are told about", envelope.type)
            return
        if await record_notification(facts, self._deps):
            self._on_recorded()


def notification_consumers(
    js: JetStreamContext, handler: NotificationEventHandler, *, deliver_all: bool = True
) -> list[EventConsumer]:
    return [
        EventConsumer(
            js,
            ConsumerSettings(
                durable=DURABLE, context="reservation", subjects=list(RESERVATION_SUBJECTS), deliver_all=deliver_all
            ),
            handler,
        ),
        EventConsumer(
            js,
            ConsumerSettings(
                durable=DURABLE, context="payment", subjects=list(PAYMENT_SUBJECTS), deliver_all=deliver_all
            ),
            handler,
        ),
    ]
