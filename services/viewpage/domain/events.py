"""The events the board follows, as plain values (no protobuf here: the adapters translate).

Times are integer milliseconds since the epoch: the read model stores them as JSON numbers, and
Redis' Lua cjson keeps 14 significant digits, which milliseconds fit and microseconds do not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventMeta:
    """What the envelope says about the change: whose, which version, when."""

    aggregate_id: str
    aggregate_version: int
    time_ms: int


@dataclass(frozen=True)
class MovieDetailsChanged:
    """MovieRegistered or MovieUpdated: the full state of the fields the board shows."""

    movie_id: str
    title: str
    genres: tuple[str, ...]
    duration_minutes: int
    poster_url: str


@dataclass(frozen=True)
class MovieRemoved:
    movie_id: str


@dataclass(frozen=True)
class ScreeningScheduled:
    screening_id: str
    movie_id: str
    movie_title: str
    duration_minutes: int
    hall: str
    start_time_ms: int
    total_seats: int
    price_minor: int
    currency: str
    blocked_seats: int = 0  # seats the seat map blocks (not in total_seats): the manager's sales


@dataclass(frozen=True)
class ScreeningRescheduled:
    screening_id: str
    movie_id: str
    hall: str
    start_time_ms: int


@dataclass(frozen=True)
class ScreeningCancelled:
    screening_id: str
    movie_id: str


RESERVATION_CONFIRMED = "CONFIRMED"
RESERVATION_CANCELLED = "CANCELLED"
RESERVATION_FAILED = "FAILED"


@dataclass(frozen=True)
class ReservationChanged:
    """ReservationConfirmed, ReservationCancelled or ReservationFailed.

    Fields an event does not carry are None (a cancellation names no hall, a failure no movie):
    the board keeps what an earlier event of the reservation said.
    """

    reservation_id: str
    customer_id: str
    state: str
    screening_id: str
    seats: tuple[str, ...]
    movie_id: str | None = None
    movie_title: str | None = None
    hall: str | None = None
    start_time_ms: int | None = None
    amount_minor: int | None = None
    currency: str | None = None

    @property
    def holds_seats(self) -> bool:
        return self.state == RESERVATION_CONFIRMED


PAYMENT_APPROVED = "APPROVED"
PAYMENT_DECLINED = "DECLINED"
PAYMENT_REFUNDED = "REFUNDED"


@dataclass(frozen=True)
class PaymentChanged:
    """PaymentAuthorized, PaymentDeclined or PaymentRefunded: the payment state of a reservation."""

    payment_id: str
    reservation_id: str
    state: str
    # The amount taken (APPROVED) or given back (REFUNDED): the manager's sales; None when unknown.
    amount_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ReviewPosted:
    review_id: str
    movie_id: str
    rating: int


@dataclass(frozen=True)
class ReviewDeleted:
    review_id: str
    movie_id: str


BoardEvent = (
    MovieDetailsChanged
    | MovieRemoved
    | ScreeningScheduled
    | ScreeningRescheduled
    | ScreeningCancelled
    | ReservationChanged
    | PaymentChanged
    | ReviewPosted
    | ReviewDeleted
)
