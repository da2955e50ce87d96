"""Builders shared by the payment integration tests: requests, cards, events, waiting."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from nats.js.client import JetStreamContext

from cinema.common.v1.money_pb2 import Money
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1.events_pb2 import ReservationCancelled
from services.kit.events import envelope as env
from services.payment.domain.processor import (
    CARD_APPROVED,
    CARD_DECLINED,
    CARD_INSUFFICIENT_FUNDS,
    CARD_PROCESSOR_ERROR,
)

TEST_CARDS = (CARD_APPROVED, CARD_INSUFFICIENT_FUNDS, CARD_DECLINED, CARD_PROCESSOR_ERROR)
NEXT_YEAR = datetime.now(UTC).year + 1


def card(number: str = CARD_APPROVED, *, month: int = 12, year: int = NEXT_YEAR, cvc: str = "123") -> payment_pb2.Card:
    return payment_pb2.Card(number=number, expiry_month=month, expiry_year=year, cvc=cvc)


def authorize_request(
    reservation_id: str | None = None,
    *,
    number: str = CARD_APPROVED,
    amount_minor: int = 2400,
    currency: str = "EUR",
    customer_id: str = "customer-1",
    customer_email: str = "ada@example.com",
    card_message: payment_pb2.Card | None = None,
) -> payment_pb2.AuthorizePaymentRequest:
    return payment_pb2.AuthorizePaymentRequest(
        reservation_id=reservation_id or str(uuid.uuid4()),
        customer_id=customer_id,
        customer_email=customer_email,
        amount=Money(minor_units=amount_minor, currency_code=currency),
        card=card_message or card(number),
        request_id=str(uuid.uuid4()),
    )


def reservation_cancelled(
    reservation_id: str, *, payment_id: str = "", customer_email: str = "ada@example.com", version: int = 3
) -> EventEnvelope:
    event = ReservationCancelled(
        reservation_id=reservation_id,
        customer_id="customer-1",
        customer_email=customer_email,
        seats=["A1", "A2"],
        amount=Money(minor_units=2400, currency_code="EUR"),
        payment_id=payment_id,
        reason="changed my mind",
    )
    return env.wrap(
        event,
        source="cinema/reservation",
        subject=reservation_id,
        aggregate_id=reservation_id,
        aggregate_version=version,
    )


async def payment_events_of(
    js: JetStreamContext, subject: str, reservation_id: str, *, within_s: float = 10.0, expect: int = 1
) -> list[EventEnvelope]:
    """The envelopes on `subject` whose correlation key is `reservation_id` (read with a throwaway consumer).

    Reads until `expect` were found (then a short extra look for more) or `within_s` passed.
    """
    durable = f"test-{uuid.uuid4().hex[:10]}"
    sub = await js.pull_subscribe(subject, durable=durable, stream="CINEMA_PAYMENT")
    found: list[EventEnvelope] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    extra_look_until: float | None = None
    try:
        while loop.time() < deadline and (extra_look_until is None or loop.time() < extra_look_until):
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                continue
            for msg in msgs:
                envelope = env.decode(msg.data)
                if envelope.subject == reservation_id:
                    found.append(envelope)
                await msg.ack()
            if len(found) >= expect and extra_look_until is None:
                extra_look_until = loop.time() + 1.0
    finally:
        await sub.unsubscribe()
        await js.delete_consumer("CINEMA_PAYMENT", durable)
    return found
