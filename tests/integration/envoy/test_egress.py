"""Service-to-service calls through Envoy's payment egress listener, two payment instances behind it.

Reservation calls payment through the egress listener (as in `make up`); the tests also call it
directly with the service token reservation holds. Killing one instance (kill -9) must be
invisible to callers (a refused connection is retried on the other instance, the health checks
take the dead one out); killing both must fail fast with UNAVAILABLE, never hang.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from cinema.common.v1.money_pb2 import Money
from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from services.payment.domain.processor import CARD_APPROVED
from tests.integration.envoy.conftest import Edge

pytestmark = pytest.mark.integration

FAST_S = 1.0  # "fails fast": every call of a dead service answers within this


def authorize_request() -> payment_pb2.AuthorizePaymentRequest:
    return payment_pb2.AuthorizePaymentRequest(
        reservation_id=str(uuid.uuid4()),
        customer_id="customer-1",
        customer_email="ada@example.com",
        amount=Money(minor_units=2400, currency_code="EUR"),
        card=payment_pb2.Card(number=CARD_APPROVED, expiry_month=12, expiry_year=2099, cvc="123"),
        request_id=str(uuid.uuid4()),
    )


def reserve_request(screening_id: str, seats: list[str]) -> reservation_pb2.CreateReservationRequest:
    return reservation_pb2.CreateReservationRequest(
        screening_id=screening_id,
        seats=seats,
        request_id=str(uuid.uuid4()),
        card=payment_pb2.Card(number=CARD_APPROVED, expiry_month=12, expiry_year=2099, cvc="123"),
    )


@pytest.fixture
async def payments(edge: Edge) -> AsyncIterator[payment_pb2_grpc.PaymentServiceAsyncStub]:
    async with grpc.aio.insecure_channel(edge.envoy.egress("payment")) as channel:
        yield payment_pb2_grpc.PaymentServiceStub(channel)


@pytest.fixture
async def reservations(edge: Edge) -> AsyncIterator[reservation_pb2_grpc.ReservationServiceAsyncStub]:
    async with grpc.aio.insecure_channel(edge.envoy.ingress) as channel:
        yield reservation_pb2_grpc.ReservationServiceStub(channel)


async def successes_by_host(edge: Edge) -> dict[str, int]:
    hosts = await edge.envoy.hosts("payment")
    return {
        address: next((int(s.get("value", 0)) for s in host["stats"] if s["name"] == "rq_success"), 0)
        for address, host in hosts.items()
    }


async def test_calls_through_the_egress_are_spread_over_both_instances(
    edge: Edge, payments: payment_pb2_grpc.PaymentServiceAsyncStub
) -> None:
    before = await successes_by_host(edge)
    for _ in range(30):
        reply = await payments.AuthorizePayment(authorize_request(), metadata=edge.service_token(), timeout=5)
        assert reply.payment.id
    after = await successes_by_host(edge)
    assert {address: after[address] - before.get(address, 0) for address in after} == {
        address: pytest.approx(15, abs=14) for address in edge.payment_addresses()
    }


async def test_a_booking_pays_through_the_egress(
    edge: Edge, reservations: reservation_pb2_grpc.ReservationServiceAsyncStub
) -> None:
    screening = await edge.publish_screening()
    reply = await reservations.CreateReservation(
        reserve_request(screening, ["A1", "A2"]), metadata=edge.token(), timeout=10
    )
    assert reply.reservation.state == reservation_pb2.RESERVATION_STATE_CONFIRMED
    line = await edge.envoy.log_line(lambda line: line["listener"] == "egress_payment")
    assert line["path"] == "/cinema.payment.v1.PaymentService/AuthorizePayment"
    assert line["grpc_status"] == "OK"


async def test_one_payment_instance_killed_callers_see_no_error(
    payments_restored: Edge,
    payments: payment_pb2_grpc.PaymentServiceAsyncStub,
    reservations: reservation_pb2_grpc.ReservationServiceAsyncStub,
) -> None:
    edge = payments_restored
    screening = await edge.publish_screening()
    for _ in range(10):
        await payments.AuthorizePayment(authorize_request(), metadata=edge.service_token(), timeout=5)
    victim, survivor = edge.payments
    await asyncio.to_thread(victim.kill)  # kill -9, no draining
    # right away, before any health check noticed: the refused connection is retried elsewhere
    for _ in range(30):
        reply = await payments.AuthorizePayment(authorize_request(), metadata=edge.service_token(), timeout=5)
        assert reply.payment.id
    for row in "BC":
        booked = await reservations.CreateReservation(
            reserve_request(screening, [f"{row}1", f"{row}2"]), metadata=edge.token(), timeout=10
        )
        assert booked.reservation.state == reservation_pb2.RESERVATION_STATE_CONFIRMED
    # outlier detection (3 gateway errors: the refused connections) and the health checks
    # (every 2 s while healthy, then every second, unhealthy after 2 failures) take the dead instance out
    await edge.envoy.wait_healthy("payment", {survivor.address}, timeout_s=5)
    status = (await edge.envoy.hosts("payment"))[victim.address]["health_status"]
    assert status.get("failed_outlier_check") or status.get("failed_active_health_check"), status
    # Envoy's log (flushed every 0.2 s) shows a retry that hid the dead instance, and no failure
    await edge.envoy.log_line(lambda line: line["listener"] == "egress_payment" and line["attempts"] > 1)
    calls = [line for line in edge.envoy.access_log() if line["listener"] == "egress_payment"]
    assert all(line["grpc_status"] == "OK" for line in calls), [c for c in calls if c["grpc_status"] != "OK"]


async def test_payment_down_fails_fast_with_unavailable(
    payments_restored: Edge,
    payments: payment_pb2_grpc.PaymentServiceAsyncStub,
    reservations: reservation_pb2_grpc.ReservationServiceAsyncStub,
) -> None:
    edge = payments_restored
    screening = await edge.publish_screening()
    for payment in edge.payments:
        await asyncio.to_thread(payment.kill)

    async def timed_authorize() -> float:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await payments.AuthorizePayment(authorize_request(), metadata=edge.service_token(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
        return time.monotonic() - started

    # at once (refused connections) and once the health checks marked both down (no healthy host:
    # a healthy host is checked every 2 s, then every second after a failure, down after 2)
    immediately = [await timed_authorize() for _ in range(10)]
    await edge.envoy.wait_healthy("payment", set(), timeout_s=15)
    known_down = [await timed_authorize() for _ in range(20)]
    assert max(immediately + known_down) < FAST_S, (immediately, known_down)
    # Envoy answered itself: "no healthy upstream" (UH), or, as Envoy's balancer sometimes still
    # picks a host when panic routing is off and none is healthy, a refused connection (UF)
    # retried once on the other instance (URX) -- both within milliseconds
    line = await edge.envoy.log_line(lambda line: line["listener"] == "egress_payment")
    assert line["flags"] in ("UH", "URX,UF", "UF"), line

    # the customer's booking fails as fast, with UNAVAILABLE (reservation's answer to payment down)
    for row in range(3):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reservations.CreateReservation(
                reserve_request(screening, [f"F{row + 1}"]), metadata=edge.token(), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < FAST_S
