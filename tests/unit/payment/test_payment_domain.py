"""Payment domain: the card value object, the simulated processor's decisions, the Payment aggregate."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime

import pytest

from services.kit.errors import InvalidArgument
from services.payment.domain.card import Card, CardBrand, luhn_valid
from services.payment.domain.events import PaymentAuthorized, PaymentDeclined, PaymentRefunded
from services.payment.domain.payment import Payment, PaymentState, RefundOutcome
from services.payment.domain.processor import (
    CARD_APPROVED,
    CARD_DECLINED,
    CARD_INSUFFICIENT_FUNDS,
    CARD_PROCESSOR_ERROR,
    DecisionKind,
    decide,
)
from services.payment.domain.values import Money

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
EUR = Money(2400, "EUR")


def card(number: str = CARD_APPROVED, month: int = 12, year: int = 2030, cvc: str = "123") -> Card:
    return Card.parse(number, month, year, cvc, now=NOW)


# ------------------------------------------------------------------------------ card


def test_a_valid_card_exposes_only_brand_and_last_four() -> None:
    visa = card("4242 4242 4242 4242")
    assert (visa.brand, visa.last4) == (CardBrand.VISA, "4242")
    assert card("378282246310005", cvc="1234").brand is CardBrand.AMEX
    assert card("5555555555554444").brand is CardBrand.MASTERCARD


@pytest.mark.parametrize("number", [CARD_APPROVED, CARD_INSUFFICIENT_FUNDS, CARD_PROCESSOR_ERROR])
def test_the_card_number_never_shows_in_repr_str_or_attributes(number: str) -> None:
    the_card = card(number)
    for text in (repr(the_card), str(the_card), f"{the_card}", repr([the_card]), repr({"card": the_card})):
        assert number not in text
        assert number[-4:] in text
    assert not hasattr(the_card, "__dict__")
    public = {name: getattr(the_card, name) for name in dir(the_card) if not name.startswith("_")}
    assert all(number not in str(value) for value in public.values() if not callable(value))


def test_a_card_cannot_be_changed_pickled_or_copied() -> None:
    the_card = card()
    with pytest.raises(AttributeError):
        the_card.last4 = "0000"
    with pytest.raises(TypeError):
        pickle.dumps(the_card)
    with pytest.raises(TypeError):
        copy.deepcopy(the_card)


@pytest.mark.parametrize(
    ("number", "month", "year", "cvc", "field"),
    [
        ("4242424242424241", 12, 2030, "123", "card.number"),  # checksum
        ("42424242", 12, 2030, "123", "card.number"),  # too short
        ("4242x24242424242", 12, 2030, "123", "card.number"),
        (CARD_APPROVED, 13, 2030, "123", "card.expiry_month"),
        (CARD_APPROVED, 0, 2030, "123", "card.expiry_month"),
        (CARD_APPROVED, 12, 30, "123", "card.expiry_year"),
        (CARD_APPROVED, 12, 2030, "12", "card.cvc"),
        (CARD_APPROVED, 12, 2030, "1234", "card.cvc"),  # four digits are for amex only
        ("378282246310005", 12, 2030, "123", "card.cvc"),
        (CARD_APPROVED, 10, 2026, "123", "card.expiry_year"),  # expired last month
    ],
)
def test_invalid_cards_are_refused_without_echoing_the_number(
    number: str, month: int, year: int, cvc: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        Card.parse(number, month, year, cvc, now=NOW)
    assert field in [v.field for v in raised.value.violations]
    assert number not in str(raised.value)


def test_a_card_is_good_through_its_expiry_month() -> None:
    assert not card(month=11, year=2026).is_expired(NOW)
    assert card(month=11, year=2026).is_expired(datetime(2026, 12, 1, tzinfo=UTC))


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


# ------------------------------------------------------------------------------ processor


@pytest.mark.parametrize(
    ("number", "kind", "reason"),
    [
        (CARD_APPROVED, DecisionKind.APPROVED, None),
        (CARD_INSUFFICIENT_FUNDS, DecisionKind.DECLINED, "insufficient_funds"),
        (CARD_DECLINED, DecisionKind.DECLINED, "card_declined"),
        (CARD_PROCESSOR_ERROR, DecisionKind.PROCESSOR_ERROR, None),
        ("5555555555554444", DecisionKind.APPROVED, None),
    ],
)
def test_the_documented_test_cards(number: str, kind: DecisionKind, reason: str | None) -> None:
    decision = decide(card(number), EUR)
    assert (decision.kind, decision.decline_reason) == (kind, reason)


# ------------------------------------------------------------------------------ payment


def approved() -> Payment:
    return Payment.approve(
        payment_id="pay-1",
        reservation_id="res-1",
        customer_id="alice",
        customer_email="alice@example.org",
        amount=EUR,
        card=card(),
        at=NOW,
    )


def test_an_approved_payment_keeps_last_four_and_brand_only() -> None:
    payment = approved()
    assert (payment.state, payment.card_last4, payment.card_brand) == (PaymentState.APPROVED, "4242", "visa")
    assert CARD_APPROVED not in repr(payment)
    (event,) = payment.events
    assert isinstance(event, PaymentAuthorized) and event.card_last4 == "4242"


def test_a_declined_payment_says_why_and_cannot_be_refunded() -> None:
    payment = Payment.decline(
        payment_id="pay-2",
        reservation_id="res-2",
        customer_id="alice",
        customer_email="",
        amount=EUR,
        card=card(CARD_INSUFFICIENT_FUNDS),
        reason="insufficient_funds",
        at=NOW,
    )
    assert payment.state is PaymentState.DECLINED and payment.decline_reason == "insufficient_funds"
    assert payment.refund(NOW) is RefundOutcome.NOT_CHARGED
    assert [type(e) for e in payment.events] == [PaymentDeclined]


def test_a_refund_happens_once() -> None:
    payment = approved()
    payment.events.clear()
    assert payment.refund(NOW) is RefundOutcome.REFUNDED
    assert payment.refund(NOW) is RefundOutcome.ALREADY_REFUNDED
    assert payment.state is PaymentState.REFUNDED and payment.refunded_at == NOW
    (event,) = payment.events
    assert isinstance(event, PaymentRefunded)
    assert (event.amount, event.customer_email) == (EUR, "alice@example.org")
