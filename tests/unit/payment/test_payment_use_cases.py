"""Payment use cases on fakes: authorize (idempotent), read, refund once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.payment.domain.events import PaymentAuthorized, PaymentDeclined, PaymentRefunded
from services.payment.domain.payment import PaymentState, RefundOutcome
from services.payment.domain.processor import CARD_APPROVED, CARD_INSUFFICIENT_FUNDS, CARD_PROCESSOR_ERROR
from services.payment.domain.values import Money
from services.payment.service_layer import payments
from services.payment.service_layer.payments import (
    AuthorizePayment,
    CardDetails,
    PaymentDependencies,
    RefundForCancelledReservation,
)

from .fakes import FakeCardProcessor, FakePaymentStore

EUR = Money(2400, "EUR")


def authorize_cmd(number: str = CARD_APPROVED, reservation_id: str = "res-1", amount: Money = EUR) -> AuthorizePayment:
    return AuthorizePayment(
        reservation_id=reservation_id,
        customer_id="alice",
        amount=amount,
        card=CardDetails(number, 12, 2030, "123"),
        customer_email="alice@example.org",
    )


async def test_an_approved_card_stores_an_approved_payment(
    deps: PaymentDependencies, store: FakePaymentStore, processor: FakeCardProcessor
) -> None:
    payment = await payments.authorize_payment(authorize_cmd(), deps)

    assert payment.state is PaymentState.APPROVED and payment.card_last4 == "4242"
    assert store.payments[payment.id].state is PaymentState.APPROVED
    assert processor.charges["res-1"] == 1
    (event,) = store.events()
    assert isinstance(event, PaymentAuthorized) and event.reservation_id == "res-1"
    assert CARD_APPROVED not in repr(store.payments) + repr(store.outbox) + repr(processor.calls)


async def test_a_declined_card_is_an_outcome_not_an_error(deps: PaymentDependencies, store: FakePaymentStore) -> None:
    payment = await payments.authorize_payment(authorize_cmd(CARD_INSUFFICIENT_FUNDS), deps)
    assert (payment.state, payment.decline_reason) == (PaymentState.DECLINED, "insufficient_funds")
    assert [type(e) for e in store.events()] == [PaymentDeclined]


async def test_a_processor_error_stores_nothing_and_answers_unavailable(
    deps: PaymentDependencies, store: FakePaymentStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(Unavailable) as raised:
        await payments.authorize_payment(authorize_cmd(CARD_PROCESSOR_ERROR), deps)
    assert raised.value.reason == "PROCESSOR_UNAVAILABLE"
    assert store.payments == {} and store.outbox == []
    assert caplog.records and CARD_PROCESSOR_ERROR not in caplog.text


async def test_after_an_injected_failure_a_retry_goes_through(
    deps: PaymentDependencies, store: FakePaymentStore, processor: FakeCardProcessor
) -> None:
    processor.failing = True
    with pytest.raises(Unavailable):
        await payments.authorize_payment(authorize_cmd(), deps)
    processor.failing = False
    payment = await payments.authorize_payment(authorize_cmd(), deps)
    assert payment.state is PaymentState.APPROVED and processor.charges["res-1"] == 1


async def test_a_second_call_returns_the_first_outcome_without_charging(
    deps: PaymentDependencies, store: FakePaymentStore, processor: FakeCardProcessor
) -> None:
    first = await payments.authorize_payment(authorize_cmd(), deps)
    again = await payments.authorize_payment(authorize_cmd(CARD_INSUFFICIENT_FUNDS), deps)  # even another card
    assert (again.id, again.state) == (first.id, PaymentState.APPROVED)
    assert len(processor.calls) == 1 and len(store.payments) == 1 and len(store.outbox) == 1

    declined = await payments.authorize_payment(authorize_cmd(CARD_INSUFFICIENT_FUNDS, "res-2"), deps)
    replay = await payments.authorize_payment(authorize_cmd(CARD_APPROVED, "res-2"), deps)
    assert (replay.id, replay.state) == (declined.id, PaymentState.DECLINED)


async def test_another_amount_for_the_same_reservation_is_refused(deps: PaymentDependencies) -> None:
    await payments.authorize_payment(authorize_cmd(), deps)
    with pytest.raises(FailedPrecondition) as raised:
        await payments.authorize_payment(authorize_cmd(amount=Money(2500, "EUR")), deps)
    assert raised.value.reason == "AMOUNT_MISMATCH"


async def test_two_first_calls_at_once_charge_once(
    deps: PaymentDependencies, store: FakePaymentStore, processor: FakeCardProcessor
) -> None:
    processor.delay_s = 0.01
    first, second = await asyncio.gather(
        payments.authorize_payment(authorize_cmd(), deps), payments.authorize_payment(authorize_cmd(), deps)
    )
    assert first.id == second.id
    assert len(store.payments) == 1 and len(store.events(PaymentAuthorized)) == 1
    assert processor.charges["res-1"] == 1  # the processor's idempotency key held
    assert store.duplicate_inserts == 1  # the loser of the insert race returned the winner's payment


async def test_invalid_requests_store_nothing(deps: PaymentDependencies, store: FakePaymentStore) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await payments.authorize_payment(authorize_cmd("4242424242424241"), deps)
    assert "4242424242424241" not in str(raised.value)
    with pytest.raises(InvalidArgument):
        await payments.authorize_payment(authorize_cmd(reservation_id=""), deps)
    assert store.payments == {}


def test_card_details_in_a_command_show_only_the_last_four() -> None:
    cmd = authorize_cmd()
    assert CARD_APPROVED not in repr(cmd) and CARD_APPROVED not in str(cmd.card)
    assert "4242" in repr(cmd.card)


async def test_get_payment_and_by_reservation(deps: PaymentDependencies) -> None:
    payment = await payments.authorize_payment(authorize_cmd(), deps)
    assert (await payments.get_payment(payment.id, deps)).reservation_id == "res-1"
    assert (await payments.get_payment_by_reservation("res-1", deps)).id == payment.id
    with pytest.raises(NotFound):
        await payments.get_payment_by_reservation("res-404", deps)
    with pytest.raises(NotFound):
        await payments.get_payment("pay-404", deps)


async def test_a_cancelled_reservation_is_refunded_once(deps: PaymentDependencies, store: FakePaymentStore) -> None:
    payment = await payments.authorize_payment(authorize_cmd(), deps)
    refund = RefundForCancelledReservation("res-1", cancelled_by=Actor.manager("manager-1"))

    first = await payments.refund_for_cancelled_reservation(refund, deps)
    second = await payments.refund_for_cancelled_reservation(refund, deps)

    assert first.outcome is RefundOutcome.REFUNDED and second.outcome is RefundOutcome.ALREADY_REFUNDED
    assert store.payments[payment.id].state is PaymentState.REFUNDED
    (event,) = store.events(PaymentRefunded)
    assert isinstance(event, PaymentRefunded) and event.payment_id == payment.id
    assert event.cancelled_by == Actor.manager("manager-1")  # passed on for the refund notice


async def test_concurrent_refunds_of_one_payment_refund_once(
    deps: PaymentDependencies, store: FakePaymentStore
) -> None:
    await payments.authorize_payment(authorize_cmd(), deps)
    results = await asyncio.gather(
        *(payments.refund_for_cancelled_reservation(RefundForCancelledReservation("res-1"), deps) for _ in range(3))
    )
    assert sorted(r.outcome for r in results) == sorted(
        [RefundOutcome.REFUNDED, RefundOutcome.ALREADY_REFUNDED, RefundOutcome.ALREADY_REFUNDED]
    )
    assert len(store.events(PaymentRefunded)) == 1


async def test_refunds_of_unknown_or_declined_payments_are_no_ops(
    deps: PaymentDependencies, store: FakePaymentStore
) -> None:
    unknown = await payments.refund_for_cancelled_reservation(RefundForCancelledReservation("res-404"), deps)
    assert (unknown.outcome, unknown.payment) == (RefundOutcome.NO_PAYMENT, None)

    await payments.authorize_payment(authorize_cmd(CARD_INSUFFICIENT_FUNDS, "res-2"), deps)
    declined = await payments.refund_for_cancelled_reservation(RefundForCancelledReservation("res-2"), deps)
    assert declined.outcome is RefundOutcome.NOT_CHARGED
    assert store.events(PaymentRefunded) == []
