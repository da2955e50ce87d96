"""The messages: which template an event gets, what it says, and who is not written to."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.kit.actor import Actor
from services.kit.errors import InvalidArgument
from services.notification.domain.model import (
    NO_RECIPIENT,
    DeliveryState,
    Draft,
    EventFacts,
    EventKind,
    MessageKind,
    Money,
    ReservationFacts,
    RetryPolicy,
    Skip,
    classify_cancellation,
    message_id,
)
from services.notification.domain.templates import draft

UTC_ZONE = ZoneInfo("UTC")
STARTS = datetime(2027, 3, 5, 19, 30, tzinfo=UTC)
FACTS = ReservationFacts(movie_title="Metropolis", starts_at=STARTS, hall="Hall 2", seats=("A1", "A2"))


def facts(kind: EventKind, *, reason: str = "", email: str = "ada@example.com", **changes: object) -> EventFacts:
    base = EventFacts(
        event_id="5c1b3b4e-4f0e-4a8e-9a8e-0a0a0a0a0a0a",
        event_type="cinema.reservation.v1.X",
        kind=kind,
        reservation_id="r-1",
        customer_id="customer-1",
        customer_email=email,
        reservation=ReservationFacts() if kind is EventKind.PAYMENT_REFUNDED else FACTS,
        amount=Money(2400, "EUR"),
        reason=reason,
    )
    return EventFacts(**{**base.__dict__, **changes})


def drafted(f: EventFacts, known: ReservationFacts | None = None) -> Draft:
    result = draft(f, UTC_ZONE, known)
    assert isinstance(result, Draft)
    return result


def test_confirmation_names_movie_time_hall_seats_and_amount() -> None:
    d = drafted(facts(EventKind.RESERVATION_CONFIRMED))
    assert d.message_kind is MessageKind.CONFIRMED
    assert d.subject == "Your seats for Metropolis are confirmed"
    for text in ("Metropolis", "Friday 05 March 2027, 19:30 UTC", "Hall 2", "A1, A2", "24.00 EUR", "r-1"):
        assert text in d.body
    assert (d.recipient, d.state, d.error) == ("ada@example.com", DeliveryState.PENDING, "")


YOU = "You cancelled your reservation for Metropolis"
WE = "We cancelled your reservation for Metropolis"
CUSTOMER = Actor.customer("customer-1")
MANAGER = Actor.manager("manager-1")
SCREENING = Actor.system("SCREENING_CANCELLED")
LATE = Actor.system("PAYMENT_APPROVED_AFTER_RESERVATION_ENDED")


def cancelled(actor: Actor | None, reason: str) -> EventFacts:
    return facts(EventKind.RESERVATION_CANCELLED, reason=reason, actor=actor)


@pytest.mark.parametrize(
    ("actor", "reason", "kind", "subject"),
    [
        (CUSTOMER, "CANCELLED_BY_CUSTOMER", MessageKind.CANCELLED_BY_CUSTOMER, YOU),
        (CUSTOMER, "plans changed", MessageKind.CANCELLED_BY_CUSTOMER, YOU),
        (MANAGER, "CANCELLED_BY_MANAGER", MessageKind.CANCELLED_BY_CINEMA, WE),
        (MANAGER, "Projector broke", MessageKind.CANCELLED_BY_CINEMA, WE),
        (
            SCREENING,
            "projector broke",
            MessageKind.SCREENING_CANCELLED,
            "Screening cancelled: Metropolis on Friday 05 March 2027, 19:30 UTC",
        ),
        (Actor.system("SOMETHING_NEW"), "x", MessageKind.CANCELLED_BY_CINEMA, WE),
    ],
)
def test_cancellations_are_worded_for_who_cancelled(actor: Actor, reason: str, kind: MessageKind, subject: str) -> None:
    d = drafted(cancelled(actor, reason))
    assert (d.message_kind, d.subject) == (kind, subject)
    assert "24.00 EUR will be refunded" in d.body
    assert "A1, A2" in d.body


def test_the_wording_follows_the_actor_never_the_reason_text() -> None:
    # A customer's words that look like the cinema's, and a manager's that look like a customer's.
    by_customer = drafted(cancelled(CUSTOMER, "CANCELLED_BY_MANAGER"))
    by_manager = drafted(cancelled(MANAGER, "CANCELLED_BY_CUSTOMER"))
    assert by_customer.message_kind is MessageKind.CANCELLED_BY_CUSTOMER
    assert by_manager.message_kind is MessageKind.CANCELLED_BY_CINEMA
    assert "CANCELLED_BY" not in by_customer.body + by_manager.body  # codes are nobody's words


def test_the_customers_reason_is_shown_as_theirs() -> None:
    body = drafted(cancelled(CUSTOMER, "plans changed")).body
    assert "you cancelled your reservation" in body
    assert "  Your reason: plans changed\n" in body
    assert "sorry" not in body and "Why:" not in body
    without = drafted(cancelled(CUSTOMER, "CANCELLED_BY_CUSTOMER")).body
    assert "Your reason" not in without and "CANCELLED_BY_CUSTOMER" not in without


def test_a_managers_cancellation_is_the_cinemas_apology() -> None:
    body = drafted(cancelled(MANAGER, "Projector broke")).body
    assert "we are sorry: we had to cancel your reservation" in body
    assert "  Why:     Projector broke\n" in body
    no_words = drafted(cancelled(MANAGER, "CANCELLED_BY_MANAGER")).body
    assert "  Why:     the cinema had to change its plans\n" in no_words
    assert "CANCELLED_BY_MANAGER" not in no_words


def test_a_screening_cancellation_is_the_cinemas_with_the_reason() -> None:
    body = drafted(cancelled(SCREENING, "projector broke")).body
    assert "we are sorry: the screening of Metropolis" in body
    assert "  Why:     projector broke\n" in body
    no_words = drafted(cancelled(SCREENING, "SCREENING_CANCELLED")).body
    assert "Why:" not in no_words and "SCREENING_CANCELLED" not in no_words


@pytest.mark.parametrize(
    ("reason", "kind", "subject"),
    [
        ("CANCELLED_BY_CUSTOMER", MessageKind.CANCELLED_BY_CUSTOMER, YOU),
        ("CANCELLED_BY_MANAGER", MessageKind.CANCELLED_BY_CINEMA, WE),
        (
            "SCREENING_CANCELLED",
            MessageKind.SCREENING_CANCELLED,
            "Screening cancelled: Metropolis on Friday 05 March 2027, 19:30 UTC",
        ),
        ("plans changed", MessageKind.CANCELLED, "Your reservation for Metropolis is cancelled"),
    ],
)
def test_an_event_from_before_attribution_trusts_only_bookings_codes(
    reason: str, kind: MessageKind, subject: str
) -> None:
    d = drafted(cancelled(None, reason))
    assert (d.message_kind, d.subject) == (kind, subject)
    if kind is MessageKind.CANCELLED:  # free text: could be anyone's words, so neither "you" nor "we"
        assert "  Reason:  plans changed\n" in d.body
        assert "sorry" not in d.body and "you cancelled" not in d.body


def test_a_refund_only_cancellation_tells_nobody() -> None:
    for actor in (LATE, None):
        result = draft(cancelled(actor, "PAYMENT_APPROVED_AFTER_RESERVATION_ENDED"), UTC_ZONE)
        assert isinstance(result, Skip)
    assert classify_cancellation(LATE, "anything") is None
    assert classify_cancellation(None, "PAYMENT_APPROVED_AFTER_RESERVATION_ENDED") is None


def test_the_refund_of_a_late_approval_does_not_speak_of_a_cancellation() -> None:
    late = drafted(facts(EventKind.PAYMENT_REFUNDED, actor=LATE), known=FACTS)
    assert late.message_kind is MessageKind.REFUNDED_LATE_PAYMENT
    assert "approved only after your reservation had already ended" in late.body
    assert "cancelled" not in late.body
    for actor in (CUSTOMER, MANAGER, SCREENING, None):
        refund = drafted(facts(EventKind.PAYMENT_REFUNDED, actor=actor), known=FACTS)
        assert refund.message_kind is MessageKind.REFUNDED and "your cancelled reservation" in refund.body


def test_a_refund_borrows_movie_time_and_seats_from_an_earlier_message() -> None:
    d = drafted(facts(EventKind.PAYMENT_REFUNDED), known=FACTS)
    assert d.subject == "Your refund of 24.00 EUR is on its way"
    assert "Metropolis" in d.body and "A1, A2" in d.body
    alone = drafted(facts(EventKind.PAYMENT_REFUNDED))
    assert "your movie" in alone.body and "(time not known)" in alone.body


def test_no_or_bad_address_is_recorded_parked_not_sent() -> None:
    for email in ("", "not-an-address", "a@b.c\r\nBcc: x@y.z"):
        d = drafted(facts(EventKind.RESERVATION_CONFIRMED, email=email))
        assert (d.state, d.recipient) == (DeliveryState.PARKED, "")
        assert d.error.startswith(NO_RECIPIENT)


def test_line_breaks_in_a_title_cannot_add_headers() -> None:
    evil = ReservationFacts(movie_title="X\r\nBcc: victim@example.com", starts_at=STARTS, seats=("A1",))
    d = drafted(facts(EventKind.RESERVATION_CONFIRMED, reservation=evil))
    assert "\n" not in d.subject and "\r" not in d.subject


def test_an_event_without_customer_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        draft(facts(EventKind.RESERVATION_CONFIRMED, customer_id=""), UTC_ZONE)


def test_times_are_written_in_the_configured_zone() -> None:
    d = draft(facts(EventKind.RESERVATION_CONFIRMED), ZoneInfo("Europe/Berlin"))
    assert isinstance(d, Draft)
    assert "20:30 CET" in d.body


def test_money_uses_the_currency_decimals() -> None:
    assert Money(2400, "EUR").display() == "24.00 EUR"
    assert Money(5, "USD").display() == "0.05 USD"
    assert Money(1500, "JPY").display() == "1500 JPY"
    assert Money(1234, "KWD").display() == "1.234 KWD"


def test_backoff_doubles_up_to_the_cap_and_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=4, base_s=2, max_s=10)
    assert [policy.delay_after(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 10]
    assert not policy.gives_up_after(3)
    assert policy.gives_up_after(4)


def test_message_id_is_stable_per_event() -> None:
    assert message_id("e-1", "n.example") == message_id("e-1", "n.example") == "<e-1@n.example>"
