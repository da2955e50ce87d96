"""The refund saga step: ReservationCancelled on JetStream -> one refund, PaymentRefunded via the outbox."""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest
from nats.js.client import JetStreamContext

from cinema.payment.v1 import events_pb2, payment_pb2
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.payment.bootstrap import PaymentApp
from services.payment.domain.processor import CARD_INSUFFICIENT_FUNDS
from services.payment.entrypoints.reservation_events import DURABLE, ReservationCancelledHandler
from tests.integration.payment.conftest import Metadata
from tests.integration.payment.helpers import authorize_request, payment_events_of, reservation_cancelled
from tests.support.polling import eventually

if TYPE_CHECKING:
    from cinema.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub

pytestmark = pytest.mark.integration


async def handled(pool: asyncpg.Pool, event_id: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", DURABLE, uuid.UUID(event_id)
        )
    )


async def consumer_idle(js: JetStreamContext) -> bool:
    info = await js.consumer_info("CINEMA_RESERVATION", DURABLE)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def refunded_events(pool: asyncpg.Pool, payment_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'cinema.payment.v1.PaymentRefunded'",
        payment_id,
    )
    return count


async def pay(stub: PaymentServiceAsyncStub, token: Metadata, number: str | None = None) -> payment_pb2.Payment:
    request = authorize_request(number=number) if number else authorize_request()
    return (await stub.AuthorizePayment(request, metadata=token, timeout=5)).payment


async def test_a_cancelled_reservation_is_refunded_once_and_the_refund_is_published(
    app: PaymentApp, stub: PaymentServiceAsyncStub, service_token: Metadata, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    payment = await pay(stub, service_token)
    cancelled = reservation_cancelled(payment.reservation_id, payment_id=payment.id, customer_email="ada@example.com")
    await jetstream.publish(js, cancelled)
    await eventually(lambda: handled(pool, cancelled.id))

    after = await stub.GetPaymentByReservation(
        payment_pb2.GetPaymentByReservationRequest(reservation_id=payment.reservation_id),
        metadata=service_token,
        timeout=5,
    )
    assert after.payment.state == payment_pb2.PAYMENT_STATE_REFUNDED
    assert after.payment.HasField("refund_time")
    assert after.payment.id == payment.id
    row = await pool.fetchrow("SELECT state, version, refunded_at FROM payments WHERE id = $1", uuid.UUID(payment.id))
    assert row is not None and (row["state"], row["version"]) == ("REFUNDED", 2)

    [envelope] = await payment_events_of(js, "cinema.payment.refunded", payment.reservation_id)
    assert envelope.type == "cinema.payment.v1.PaymentRefunded"
    assert envelope.source == "cinema/payment"
    assert (envelope.subject, envelope.aggregate_id, envelope.aggregate_version) == (
        payment.reservation_id,
        payment.id,
        2,
    )
    event = env.unwrap(envelope)
    assert isinstance(event, events_pb2.PaymentRefunded)
    assert (event.payment_id, event.reservation_id, event.customer_id) == (
        payment.id,
        payment.reservation_id,
        "customer-1",
    )
    assert event.customer_email == "ada@example.com"
    assert (event.amount.minor_units, event.amount.currency_code) == (2400, "EUR")

    # The same event again: republished by a producer's retry (another message id) ...
    await js.publish(
        "cinema.reservation.cancelled", cancelled.SerializeToString(), headers={"Nats-Msg-Id": str(uuid.uuid4())}
    )
    # ... redelivered after a lost ack (the handler sees the same envelope a second time) ...
    handler = ReservationCancelledHandler(pool, app.deps)
    await handler(cancelled, env.unwrap(cancelled))
    # ... and a second, distinct cancellation of the same reservation (e.g. a voided late approval).
    second = reservation_cancelled(payment.reservation_id, payment_id=payment.id, version=4)
    await jetstream.publish(js, second)
    await eventually(lambda: handled(pool, second.id))
    await eventually(lambda: consumer_idle(js))

    assert await refunded_events(pool, payment.id) == 1
    row = await pool.fetchrow("SELECT state, version FROM payments WHERE id = $1", uuid.UUID(payment.id))
    assert row is not None and (row["state"], row["version"]) == ("REFUNDED", 2)
    assert len(await payment_events_of(js, "cinema.payment.refunded", payment.reservation_id, within_s=3)) == 1


async def test_unknown_reservation_and_declined_payment_are_acked_no_ops(
    stub: PaymentServiceAsyncStub, service_token: Metadata, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    declined = await pay(stub, service_token, CARD_INSUFFICIENT_FUNDS)
    unknown = reservation_cancelled(str(uuid.uuid4()))
    of_declined = reservation_cancelled(declined.reservation_id)
    not_an_id = reservation_cancelled("not-a-uuid")
    outbox_before = await pool.fetchval("SELECT count(*) FROM outbox")
    dead_before = (await js.stream_info("CINEMA_DEAD_LETTER")).state.messages
    for envelope in (unknown, of_declined, not_an_id):
        await jetstream.publish(js, envelope)
    for envelope in (unknown, of_declined, not_an_id):
        await eventually(functools.partial(handled, pool, envelope.id))
    await eventually(lambda: consumer_idle(js))

    assert await pool.fetchval("SELECT count(*) FROM outbox") == outbox_before
    assert (await js.stream_info("CINEMA_DEAD_LETTER")).state.messages == dead_before
    row = await pool.fetchrow("SELECT state, version FROM payments WHERE id = $1", uuid.UUID(declined.id))
    assert row is not None and (row["state"], row["version"]) == ("DECLINED", 1)
