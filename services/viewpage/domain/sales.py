"""The manager's sales, added up from the board's documents (pure).

Read side of issue 16: the board already merges, per reservation, what booking said (state,
seats, when it was confirmed) and what payment said (amount taken, amount refunded, when), each
field by the version of the aggregate that wrote it, so redeliveries and events out of order
change nothing. A screening's sales are the sum over its reservations' documents, computed when
a manager asks (a hall holds at most 2,574 seats, so a screening has a bounded number of
reservations that sold any); a movie's are the sum over its screenings.

- seats sold: seats of reservations CONFIRMED now (what the board's free seats subtract);
- seats free: sellable seats (rows x seats per row minus blocked) not sold; 0 once cancelled;
- revenue: payments approved (refunded ones included); refunds: payments refunded; net: the
  difference; cancellations: reservations CANCELLED;
- timeline: hour by hour, seats of reservations confirmed, money taken and money refunded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.viewpage.domain.events import RESERVATION_CANCELLED, RESERVATION_CONFIRMED

Document = Mapping[str, Any]
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class SalesPoint:
    start_ms: int  # start of the hour
    seats_sold: int = 0
    revenue_minor: int = 0
    refunds_minor: int = 0


@dataclass(frozen=True)
class Sales:
    currency: str = ""
    seats_sold: int = 0
    seats_free: int = 0
    seats_blocked: int = 0
    reservations_confirmed: int = 0
    cancellations: int = 0
    revenue_minor: int = 0
    refunds_minor: int = 0
    refund_count: int = 0
    timeline: tuple[SalesPoint, ...] = field(default_factory=tuple)

    @property
    def net_revenue_minor(self) -> int:
        return self.revenue_minor - self.refunds_minor


@dataclass(frozen=True)
class ScreeningSales:
    screening_id: str
    movie_id: str
    hall: str
    start_time_ms: int
    cancelled: bool
    sales: Sales


@dataclass(frozen=True)
class MovieSales:
    movie_id: str
    title: str
    sales: Sales
    screenings: tuple[ScreeningSales, ...]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _seats(value: Any) -> int:
    # Lua's cjson turns an empty JSON array into an empty object: both mean "none".
    return len(value) if isinstance(value, list) else 0


def _hour(ms: int) -> int:
    return ms - ms % HOUR_MS


class _Timeline:
    def __init__(self) -> None:
        self.hours: dict[int, list[int]] = {}

    def add(self, at_ms: int, seats: int = 0, revenue: int = 0, refunds: int = 0) -> None:
        point = self.hours.setdefault(_hour(at_ms), [0, 0, 0])
        point[0] += seats
        point[1] += revenue
        point[2] += refunds

    def points(self) -> tuple[SalesPoint, ...]:
        return tuple(SalesPoint(start, *values) for start, values in sorted(self.hours.items()))


def screening_sales(screening_id: str, screening: Document, reservations: Iterable[Document]) -> ScreeningSales:
    """The sales of one screening from its document and its reservations' documents."""
    sold = confirmed = cancelled = revenue = refunds = refund_count = 0
    timeline = _Timeline()
    for doc in reservations:
        state = doc.get("state")
        seats = _seats(doc.get("seats"))
        if state == RESERVATION_CONFIRMED:
            sold += seats
            confirmed += 1
        elif state == RESERVATION_CANCELLED:
            cancelled += 1
        if "confirmed_at_ms" in doc:
            timeline.add(_int(doc["confirmed_at_ms"]), seats=seats)
        if "paid_minor" in doc:
            revenue += _int(doc["paid_minor"])
            timeline.add(_int(doc.get("paid_at_ms")), revenue=_int(doc["paid_minor"]))
        if "refunded_minor" in doc:
            refunds += _int(doc["refunded_minor"])
            refund_count += 1
            timeline.add(_int(doc.get("refunded_at_ms")), refunds=_int(doc["refunded_minor"]))
    is_cancelled = bool(screening.get("cancelled", False))
    sellable = _int(screening.get("total_seats"))
    return ScreeningSales(
        screening_id=screening_id,
        movie_id=str(screening.get("movie_id", "")),
        hall=str(screening.get("hall", "")),
        start_time_ms=_int(screening.get("start_time_ms")),
        cancelled=is_cancelled,
        sales=Sales(
            currency=str(screening.get("currency", "")),
            seats_sold=sold,
            seats_free=0 if is_cancelled else max(0, sellable - sold),
            seats_blocked=_int(screening.get("blocked_seats")),
            reservations_confirmed=confirmed,
            cancellations=cancelled,
            revenue_minor=revenue,
            refunds_minor=refunds,
            refund_count=refund_count,
            timeline=timeline.points(),
        ),
    )


# The counts and sums a movie's sales add up over its screenings.
_ADDED = (
    "seats_sold",
    "seats_free",
    "seats_blocked",
    "reservations_confirmed",
    "cancellations",
    "revenue_minor",
    "refunds_minor",
    "refund_count",
)


def total(parts: Iterable[Sales]) -> Sales:
    """The sum of several screenings' sales (one currency: the cinema's)."""
    every = list(parts)
    timeline = _Timeline()
    for sales in every:
        for point in sales.timeline:
            timeline.add(point.start_ms, point.seats_sold, point.revenue_minor, point.refunds_minor)
    summed = Sales(currency=next((s.currency for s in every if s.currency), ""), timeline=timeline.points())
    return replace(summed, **{name: sum(getattr(s, name) for s in every) for name in _ADDED})


def movie_sales(movie_id: str, movie: Document, screenings: Iterable[ScreeningSales]) -> MovieSales:
    ordered = tuple(sorted(screenings, key=lambda s: (s.start_time_ms, s.screening_id)))
    return MovieSales(movie_id, str(movie.get("title", "")), total(s.sales for s in ordered), ordered)
