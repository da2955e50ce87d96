"""The manager's sales added up from documents (services.viewpage.domain.sales), pure."""

from __future__ import annotations

from typing import Any

from services.viewpage.domain.sales import HOUR_MS, movie_sales, screening_sales

SCREENING = {"movie_id": "m", "hall": "H", "start_time_ms": 5 * HOUR_MS, "total_seats": 48, "blocked_seats": 2}


def test_a_screening_adds_up_its_reservations() -> None:
    docs: list[dict[str, Any]] = [
        {"state": "CONFIRMED", "seats": ["A1", "A2"], "confirmed_at_ms": 10, "paid_minor": 2400, "paid_at_ms": 11},
        {
            "state": "CANCELLED",
            "seats": ["B1"],
            "confirmed_at_ms": 20,
            "paid_minor": 1200,
            "paid_at_ms": 21,
            "refunded_minor": 1200,
            "refunded_at_ms": HOUR_MS + 5,
        },
        {"state": "FAILED", "seats": ["C1"], "payment_state": "DECLINED"},
        {"payment_state": "APPROVED", "paid_minor": 700, "paid_at_ms": 30},  # its booking event not seen yet
        {"state": "CONFIRMED", "seats": {}},  # Lua's cjson: an empty list comes back as an object
    ]
    view = screening_sales("s", {**SCREENING, "currency": "EUR"}, docs)
    s = view.sales
    assert (s.seats_sold, s.seats_free, s.seats_blocked) == (2, 46, 2)
    assert (s.reservations_confirmed, s.cancellations, s.refund_count) == (2, 1, 1)
    assert (s.revenue_minor, s.refunds_minor, s.net_revenue_minor, s.currency) == (4300, 1200, 3100, "EUR")
    assert [(p.start_ms, p.seats_sold, p.revenue_minor, p.refunds_minor) for p in s.timeline] == [
        (0, 3, 4300, 0),
        (HOUR_MS, 0, 0, 1200),
    ]


def test_a_cancelled_screening_has_no_free_seats_and_a_movie_sums_its_screenings() -> None:
    cancelled = screening_sales("b", {**SCREENING, "start_time_ms": 9, "cancelled": True}, [])
    selling = screening_sales("a", SCREENING, [{"state": "CONFIRMED", "seats": ["A1"], "confirmed_at_ms": 1}])
    assert cancelled.sales.seats_free == 0 and cancelled.cancelled
    whole = movie_sales("m", {"title": "Metropolis"}, [selling, cancelled])
    assert [s.screening_id for s in whole.screenings] == ["b", "a"]  # earliest first
    assert (whole.title, whole.sales.seats_sold, whole.sales.seats_free, whole.sales.seats_blocked) == (
        "Metropolis",
        1,
        47,
        4,
    )
