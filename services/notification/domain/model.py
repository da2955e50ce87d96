"""What notification knows: the facts an event brings, the message drafted from them, and the
life of a delivery (PENDING -> SENT, or RETRYING with backoff, or PARKED with its error).

Pure: no I/O, no protobuf. The adapters turn wire events into `EventFacts`; `draft` decides
whether the customer is told at all and renders the message from the templates.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.kit.actor import Actor, ActorKind
from services.kit.errors import InvalidArgument


class EventKind(enum.StrEnum):
    """The booking events this service turns into messages."""

    RESERVATION_CONFIRMED = "RESERVATION_CONFIRMED"
    RESERVATION_CANCELLED = "RESERVATION_CANCELLED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"


class MessageKind(enum.StrEnum):
    """Which template a message uses; a cancellation reads differently depending on who caused it."""

    CONFIRMED = "CONFIRMED"
    CANCELLED_BY_CUSTOMER = "CANCELLED_BY_CUSTOMER"  # the customer's wording; their reason shown as theirs
    CANCELLED_BY_CINEMA = "CANCELLED_BY_CINEMA"  # a manager (or a rule) cancelled it: the cinema's apology
    SCREENING_CANCELLED = "SCREENING_CANCELLED"  # the cinema's apology, with the screening's reason
    # An event from before attribution whose reason is free text: it could be anyone's words, so
    # the message says neither "you cancelled" nor "we cancelled".
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"
    # The refund of a payment approved only after its reservation had ended (failed or
    # cancelled meanwhile): nothing was booked, so the notice does not speak of a cancellation.
    REFUNDED_LATE_PAYMENT = "REFUNDED_LATE_PAYMENT"


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"  # recorded; no attempt has failed yet
    RETRYING = "RETRYING"  # an attempt failed; the next one is due at `next_attempt_at`
    SENT = "SENT"  # the mail server accepted it
    PARKED = "PARKED"  # given up (attempts exhausted, no address, or the outcome is in doubt)


class InDoubtPolicy(enum.StrEnum):
    """What to do with a delivery whose mail server may or may not have taken the message.

    PARK (the default) never sends twice and may lose that one message (it is parked, visible,
    and can be re-queued by an operator); RESEND never loses it and may send it twice, with
    the same Message-ID (receivers that deduplicate by Message-ID show it once).
    """

    PARK = "park"
    RESEND = "resend"


# Codes booking writes as the reason of ReservationCancelled when nobody gave words of their own
# (services.reservation). They are never shown as anybody's reason. Only for events written
# before attribution do they also tell who cancelled (`classify_cancellation`).
REASON_BY_CUSTOMER = "CANCELLED_BY_CUSTOMER"
REASON_BY_MANAGER = "CANCELLED_BY_MANAGER"
REASON_SCREENING_CANCELLED = "SCREENING_CANCELLED"
# A refund-only cancellation of a reservation that had already ended (a payment approved too
# late): the customer was told when it ended and hears about the refund from PaymentRefunded.
REASON_LATE_PAYMENT = "PAYMENT_APPROVED_AFTER_RESERVATION_ENDED"
REASON_CODES = frozenset({REASON_BY_CUSTOMER, REASON_BY_MANAGER, REASON_SCREENING_CANCELLED, REASON_LATE_PAYMENT})

NO_RECIPIENT = "NO_RECIPIENT: the event carries no e-mail address for the customer"
IN_DOUBT = "IN_DOUBT: the process stopped or the connection broke while the mail server was receiving the message"

# ISO 4217 minor-unit exponents that are not 2.
_CURRENCY_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3}
_WHITESPACE = re.compile(r"\s+")
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


@dataclass(frozen=True)
class Money:
    minor_units: int
    currency: str

    def display(self) -> str:
        """`2400 EUR` -> `24.00 EUR` (the currency's own number of decimals)."""
        exponent = _CURRENCY_EXPONENTS.get(self.currency, 2)
        if exponent == 0:
            return f"{self.minor_units} {self.currency}"
        whole, fraction = divmod(abs(self.minor_units), 10**exponent)
        sign = "-" if self.minor_units < 0 else ""
        return f"{sign}{whole}.{fraction:0{exponent}d} {self.currency}"


@dataclass(frozen=True)
class ReservationFacts:
    """What a message about a reservation can mention; PaymentRefunded carries none of it, so a
    refund notice borrows them from an earlier message about the same reservation."""

    movie_title: str = ""
    starts_at: datetime | None = None
    hall: str = ""
    seats: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.movie_title or self.starts_at or self.seats)


@dataclass(frozen=True)
class EventFacts:
    """One event, as far as a message to the customer is concerned."""

    event_id: str
    event_type: str  # the protobuf full name, e.g. cinema.reservation.v1.ReservationConfirmed
    kind: EventKind
    reservation_id: str
    customer_id: str
    customer_email: str
    reservation: ReservationFacts
    amount: Money | None = None
    reason: str = ""
    # Who caused it (ReservationCancelled, PaymentRefunded); None when the event predates
    # attribution or names nobody.
    actor: Actor | None = None

    @property
    def own_words(self) -> str:
        """The reason as somebody wrote it; empty when it is only one of booking's codes."""
        reason = self.reason.strip()
        return "" if reason in REASON_CODES else reason


@dataclass(frozen=True)
class Draft:
    """The notification to record for one event (one per event id, never two)."""

    event_id: str
    event_type: str
    message_kind: MessageKind
    customer_id: str
    recipient: str  # "" when the event named none: recorded PARKED, readable in the API
    subject: str
    body: str
    reservation_id: str
    reservation: ReservationFacts
    state: DeliveryState
    error: str = ""


@dataclass(frozen=True)
class Skip:
    """No message for this event, and why."""

    reason: str


def one_line(text: str) -> str:
    """Values that go into a subject line: no line breaks (header injection), no runs of blanks."""
    return _WHITESPACE.sub(" ", text).strip()


def valid_address(address: str) -> bool:
    return bool(_EMAIL.match(address)) and len(address) <= 254


def classify_cancellation(actor: Actor | None, reason: str) -> MessageKind | None:
    """The template for a ReservationCancelled, from who cancelled; None when nobody is to be told.

    The customer cancelling their own reservation gets their own wording, a manager's
    cancellation the cinema's, the system's the cinema's too (a cancelled screening its own
    message with the reason). A late approval voided (refund only) tells nobody: the customer
    was told when the reservation ended, and hears of the refund from PaymentRefunded.
    """
    if actor is None:
        return _classify_unattributed(reason)
    if actor.kind is ActorKind.CUSTOMER:
        return MessageKind.CANCELLED_BY_CUSTOMER
    if actor.kind is ActorKind.SYSTEM:
        if actor.cause == REASON_LATE_PAYMENT:
            return None
        if actor.cause == REASON_SCREENING_CANCELLED:
            return MessageKind.SCREENING_CANCELLED
    return MessageKind.CANCELLED_BY_CINEMA


def _classify_unattributed(reason: str) -> MessageKind | None:
    """An event written before attribution. Booking's codes were exact (they named who
    cancelled when nobody gave words); free text could be the customer's, a manager's or the
    catalog's words, so it gets the neutral message, which claims neither."""
    if reason == REASON_LATE_PAYMENT:
        return None
    if reason == REASON_BY_CUSTOMER:
        return MessageKind.CANCELLED_BY_CUSTOMER
    if reason == REASON_BY_MANAGER:
        return MessageKind.CANCELLED_BY_CINEMA
    if reason == REASON_SCREENING_CANCELLED:
        return MessageKind.SCREENING_CANCELLED
    return MessageKind.CANCELLED


def message_kind(facts: EventFacts) -> MessageKind | None:
    if facts.kind is EventKind.RESERVATION_CONFIRMED:
        return MessageKind.CONFIRMED
    if facts.kind is EventKind.PAYMENT_REFUNDED:
        actor = facts.actor
        late = actor is not None and actor.kind is ActorKind.SYSTEM and actor.cause == REASON_LATE_PAYMENT
        return MessageKind.REFUNDED_LATE_PAYMENT if late else MessageKind.REFUNDED
    return classify_cancellation(facts.actor, facts.reason)


def require_facts(facts: EventFacts) -> None:
    """An event that cannot belong to anybody is refused (the consumer parks it as poison)."""
    if not facts.customer_id:
        raise InvalidArgument.for_field("customer_id", f"event {facts.event_id} names no customer")
    if not facts.reservation_id:
        raise InvalidArgument.for_field("reservation_id", f"event {facts.event_id} names no reservation")


# ------------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between delivery attempts, then parking."""

    max_attempts: int = 6
    base_s: float = 2.0
    max_s: float = 600.0

    def delay_after(self, attempts: int) -> timedelta:
        """Wait before attempt `attempts + 1`: base, 2x base, 4x base ... capped."""
        return timedelta(seconds=min(self.max_s, self.base_s * 2 ** max(0, attempts - 1)))

    def gives_up_after(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def display_time(when: datetime | None, zone: ZoneInfo) -> str:
    if when is None:
        return "(time not known)"
    local = when.astimezone(zone)
    return local.strftime("%A %d %B %Y, %H:%M ") + (local.tzname() or "")


def message_id(event_id: str, domain: str) -> str:
    """Stable per event: a resent copy carries the same Message-ID, so it can be recognised."""
    return f"<{event_id}@{domain}>"
