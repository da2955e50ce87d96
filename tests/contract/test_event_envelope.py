"""Contract: what every event consumer expects of a published event.

The consumer side of the events contract, checked against events really published to a
real JetStream by the kit's publisher (the one every producer's outbox relay uses):
subject and stream by name, `Nats-Msg-Id` = envelope id (dedupe), W3C trace context in the
headers and the envelope, a decodable payload of the announced type, and the correlation key
as the envelope's subject. Later issues add a test per consumed event here.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError
from opentelemetry import trace

from cinema.common.v1.money_pb2 import Money
from cinema.reservation.v1.events_pb2 import ReservationConfirmed
from services.kit import telemetry
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.events.naming import parse_full_name
from services.kit.settings import KitSettings
from tests.support.servers import Server

pytestmark = pytest.mark.integration

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def test_names_follow_the_design() -> None:
    assert parse_full_name("cinema.reservation.v1.ReservationConfirmed").subject == "cinema.reservation.confirmed"
    assert parse_full_name("cinema.movie.v1.ScreeningScheduled").subject == "cinema.movie.screening_scheduled"
    assert parse_full_name("cinema.payment.v1.PaymentRefunded").subject == "cinema.payment.refunded"
    assert parse_full_name("cinema.review.v1.ReviewPosted").stream == "CINEMA_REVIEW"
    with pytest.raises(ValueError, match="not an event of a cinema context"):
        parse_full_name("google.protobuf.Empty")


async def test_reservation_confirmed_reaches_a_consumer_as_the_contract_says(nats_server: Server) -> None:
    telemetry.configure_tracing(KitSettings())  # the process-wide provider the services use
    nc = NATS()
    await nc.connect(nats_server.url, connect_timeout=2, max_reconnect_attempts=0)
    js = nc.jetstream()
    try:
        for config in jetstream.stream_configs():  # a clean slate: other tests share this server
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(config.name or "")
        await jetstream.ensure_streams(js)
        await jetstream.ensure_streams(js)  # idempotent

        reservation_id = str(uuid.uuid4())
        event = ReservationConfirmed(
            reservation_id=reservation_id,
            customer_id="customer-1",
            screening_id=str(uuid.uuid4()),
            movie_title="Arrival",
            hall="1",
            seats=["A1", "A2"],
            amount=Money(minor_units=2400, currency_code="EUR"),
        )
        event.start_time.FromDatetime(datetime(2030, 1, 1, 20, 0, tzinfo=UTC))
        with trace.get_tracer("contract-test").start_as_current_span("create reservation"):
            envelope = env.wrap(
                event,
                source="cinema/reservation",
                subject=reservation_id,
                aggregate_id=reservation_id,
                aggregate_version=2,
            )
        ack = await jetstream.publish(js, envelope)
        assert ack.stream == "CINEMA_RESERVATION" and not ack.duplicate
        assert (await jetstream.publish(js, envelope)).duplicate  # a relay's republish is deduplicated

        # The consumer's side: a durable pull consumer named after the subscribing service.
        sub = await js.pull_subscribe(
            "cinema.reservation.confirmed",
            durable="contract-notification",
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=5),
        )
        [msg] = await sub.fetch(1, timeout=5)
        assert msg.subject == "cinema.reservation.confirmed"
        assert msg.headers is not None
        received = env.decode(msg.data)
        assert msg.headers["Nats-Msg-Id"] == received.id == envelope.id
        assert msg.headers[jetstream.HEADER_EVENT_TYPE] == received.type == "cinema.reservation.v1.ReservationConfirmed"
        assert TRACEPARENT.match(msg.headers["traceparent"]) and received.traceparent == msg.headers["traceparent"]
        assert received.subject == reservation_id  # the correlation key
        assert received.aggregate_id == reservation_id and received.aggregate_version == 2
        assert received.spec_version == "1.0" and received.source == "cinema/reservation"
        payload = env.unwrap(received)
        assert isinstance(payload, ReservationConfirmed)
        assert list(payload.seats) == ["A1", "A2"] and payload.amount.minor_units == 2400
        await msg.ack_sync()
    finally:
        for config in jetstream.stream_configs():
            await js.delete_stream(config.name or "")
        await nc.close()


def test_a_poison_payload_is_reported_as_undecodable() -> None:
    with pytest.raises(env.UndecodableEvent):
        env.decode(b"\xff\xff not protobuf")
    bogus = env.wrap(
        Money(minor_units=1, currency_code="EUR"), source="x", subject="s", aggregate_id="a", aggregate_version=1
    )
    bogus.type = "cinema.reservation.v1.NoSuchEvent"
    with pytest.raises(env.UndecodableEvent, match="unknown event type"):
        env.unwrap(bogus)
