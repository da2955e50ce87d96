"""The messages, as `string.Template`s: one subject and one plain-text body per message kind.

Placeholders: $movie_title, $starts_at, $hall, $seats, $amount, $reason, $reservation_id, and
$why: the line (or nothing) giving the reason of a cancellation, worded for who cancelled
("Your reason:" for the customer's own words, "Why:" for the cinema's). Values that go into a
subject are made single-line first (see `model.one_line`), so a movie title or a reason cannot
add a header. `draft` decides and renders; it is the only entry point.
"""

from __future__ import annotations

from string import Template
from zoneinfo import ZoneInfo

from services.notification.domain.model import (
    NO_RECIPIENT,
    DeliveryState,
    Draft,
    EventFacts,
    MessageKind,
    ReservationFacts,
    Skip,
    display_time,
    message_kind,
    one_line,
    require_facts,
    valid_address,
)

_SIGNATURE = "\n\nSee you at the movies,\nYour Cinema\n"

SUBJECTS: dict[MessageKind, Template] = {
    MessageKind.CONFIRMED: Template("Your seats for $movie_title are confirmed"),
    MessageKind.CANCELLED_BY_CUSTOMER: Template("You cancelled your reservation for $movie_title"),
    MessageKind.CANCELLED_BY_CINEMA: Template("We cancelled your reservation for $movie_title"),
    MessageKind.SCREENING_CANCELLED: Template("Screening cancelled: $movie_title on $starts_at"),
    MessageKind.CANCELLED: Template("Your reservation for $movie_title is cancelled"),
    MessageKind.REFUNDED: Template("Your refund of $amount is on its way"),
    MessageKind.REFUNDED_LATE_PAYMENT: Template("Your refund of $amount is on its way"),
}

BODIES: dict[MessageKind, Template] = {
    MessageKind.CONFIRMED: Template(
        "Hello,\n\n"
        "your reservation is confirmed and paid.\n\n"
        "  Movie:   $movie_title\n"
        "  When:    $starts_at\n"
        "  Hall:    $hall\n"
        "  Seats:   $seats\n"
        "  Paid:    $amount\n\n"
        "Reservation $reservation_id. Please be seated a few minutes before the start."
    ),
    MessageKind.CANCELLED_BY_CUSTOMER: Template(
        "Hello,\n\n"
        "you cancelled your reservation; the seats are free again.\n\n"
        "  Movie:   $movie_title\n"
        "  When:    $starts_at\n"
        "  Seats:   $seats\n"
        "$why\n"
        "$amount will be refunded to your card; we will write again when it is done.\n"
        "Reservation $reservation_id."
    ),
    MessageKind.CANCELLED_BY_CINEMA: Template(
        "Hello,\n\n"
        "we are sorry: we had to cancel your reservation.\n\n"
        "  Movie:   $movie_title\n"
        "  When:    $starts_at\n"
        "  Seats:   $seats\n"
        "$why\n"
        "$amount will be refunded to your card; we will write again when it is done.\n"
        "Reservation $reservation_id."
    ),
    MessageKind.SCREENING_CANCELLED: Template(
        "Hello,\n\n"
        "we are sorry: the screening of $movie_title on $starts_at will not take place,\n"
        "so your reservation for seats $seats is cancelled.\n"
        "$why\n"
        "$amount will be refunded to your card; we will write again when it is done.\n"
        "Reservation $reservation_id."
    ),
    MessageKind.CANCELLED: Template(
        "Hello,\n\n"
        "your reservation is cancelled and the seats are free again.\n\n"
        "  Movie:   $movie_title\n"
        "  When:    $starts_at\n"
        "  Seats:   $seats\n"
        "$why\n"
        "$amount will be refunded to your card; we will write again when it is done.\n"
        "Reservation $reservation_id."
    ),
    MessageKind.REFUNDED: Template(
        "Hello,\n\n"
        "we have refunded $amount to your card for your cancelled reservation.\n\n"
        "  Movie:   $movie_title\n"
        "  When:    $starts_at\n"
        "  Seats:   $seats\n\n"
        "Depending on your bank it may take a few days to show. Reservation $reservation_id."
    ),
    MessageKind.REFUNDED_LATE_PAYMENT: Template(
        "Hello,\n\n"
        "your card payment was approved only after your reservation had already ended, so no\n"
        "seats were held for it. We have refunded $amount to your card.\n\n"
        "  Movie:   $movie_title\n"
        "  When:    $starts_at\n"
        "  Seats:   $seats\n\n"
        "Depending on your bank it may take a few days to show. Reservation $reservation_id."
    ),
}


# The cinema's reason when a manager (or a rule) gave no words of their own.
CINEMA_DEFAULT_REASON = "the cinema had to change its plans"


def _why(kind: MessageKind, words: str) -> str:
    """The reason line of a cancellation, worded for who cancelled; empty when there is none to give."""
    if kind is MessageKind.CANCELLED_BY_CUSTOMER:
        return f"  Your reason: {words}\n" if words else ""
    if kind is MessageKind.CANCELLED_BY_CINEMA:
        return f"  Why:     {words or CINEMA_DEFAULT_REASON}\n"
    if kind is MessageKind.SCREENING_CANCELLED:
        return f"\n  Why:     {words}\n" if words else ""
    if kind is MessageKind.CANCELLED:
        return f"  Reason:  {words}\n" if words else ""
    return ""


def _values(kind: MessageKind, facts: EventFacts, reservation: ReservationFacts, zone: ZoneInfo) -> dict[str, str]:
    words = one_line(facts.own_words)
    return {
        "movie_title": one_line(reservation.movie_title) or "your movie",
        "starts_at": display_time(reservation.starts_at, zone),
        "hall": one_line(reservation.hall) or "(see the board)",
        "seats": ", ".join(reservation.seats) or "(not known)",
        "amount": facts.amount.display() if facts.amount is not None else "the amount paid",
        "reason": words or CINEMA_DEFAULT_REASON,
        "why": _why(kind, words),
        "reservation_id": facts.reservation_id,
    }


def draft(facts: EventFacts, zone: ZoneInfo, known: ReservationFacts | None = None) -> Draft | Skip:
    """The notification for `facts`, or why there is none.

    `known` are the reservation's facts from an earlier message (used when the event itself
    has none, i.e. PaymentRefunded). An event without a usable address is still recorded, as
    PARKED with NO_RECIPIENT, so the customer can read it through the API and an operator sees it.
    """
    require_facts(facts)
    kind = message_kind(facts)
    if kind is None:
        return Skip(f"reason {facts.reason}: the customer was told when the reservation ended")
    reservation = facts.reservation if facts.reservation.known or known is None else known
    values = _values(kind, facts, reservation, zone)
    subject = one_line(SUBJECTS[kind].substitute(values))
    body = BODIES[kind].substitute(values) + _SIGNATURE
    recipient = facts.customer_email.strip()
    usable = valid_address(recipient)
    return Draft(
        event_id=facts.event_id,
        event_type=facts.event_type,
        message_kind=kind,
        customer_id=facts.customer_id,
        recipient=recipient if usable else "",
        subject=subject,
        body=body,
        reservation_id=facts.reservation_id,
        reservation=reservation,
        state=DeliveryState.PENDING if usable else DeliveryState.PARKED,
        error="" if usable else NO_RECIPIENT + (f" (got {recipient!r})" if recipient else ""),
    )
