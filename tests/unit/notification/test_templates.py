"""The messages: which template an event gets, what it says, and who is not written to."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

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


@pytest.mark.parametrize(
    ("reason", "kind", "subject"),
    [
        ("CANCELLED_BY_CUSTOMER", MessageKind.CANCELLED_BY_CUSTOMER, "Your reservation for Metropolis is cancelled"),
        ("CANCELLED_BY_MANAGER", MessageKind.CANCELLED_BY_CINEMA, "We cancelled your reservation for Metropolis"),
        ("Projector broke", MessageKind.CANCELLED_BY_CINEMA, "We cancelled your reservation for Metropolis"),
        (
            "SCREENING_CANCELLED",
            MessageKind.SCREENING_CANCELLED,
            "Screening cancelled: Metropolis on Friday 05 March 2027, 19:30 UTC",
        ),
    ],
)
def test_cancellations_read_differently_by_cause(reason: str, kind: MessageKind, subject: str) -> None:
    d = drafted(facts(EventKind.RESERVATION_CANCELLED, reason=reason))
    assert (d.message_kind, d.subject) == (kind, subject)
    assert "24.00 EUR will be refunded" in d.body
    assert "A1, A2" in d.body


def test_a_free_text_reason_is_quoted_and_a_manager_code_is_not() -> None:
    assert "Why:     Projector broke" in drafted(facts(EventKind.RESERVATION_CANCELLED, reason="Projector broke")).body
    body = drafted(facts(EventKind.RESERVATION_CANCELLED, reason="CANCELLED_BY_MANAGER")).body
    assert "CANCELLED_BY_MANAGER" not in body


def test_a_refund_only_cancellation_tells_nobody() -> None:
    result = draft(facts(EventKind.RESERVATION_CANCELLED, reason="PAYMENT_APPROVED_AFTER_RESERVATION_ENDED"), UTC_ZONE)
    assert isinstance(result, Skip)
    assert classify_cancellation("PAYMENT_APPROVED_AFTER_RESERVATION_ENDED") is None


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
