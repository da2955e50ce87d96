"""Booking's business series, counted when the transaction that changed a reservation commits.

- `cinema_seats_sold_total`: seats of reservations confirmed (paid).
- `cinema_seats_released_total`: seats given back by a cancellation of a confirmed reservation.
- `cinema_reservations_total{outcome}`: reservations `confirmed`, `failed` (declined or
  payment never approved) and `cancelled`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from services.reservation.domain.events import ReservationCancelled, ReservationConfirmed, ReservationFailed

SEATS_SOLD = Counter("cinema_seats_sold_total", "Seats of confirmed (paid) reservations")
SEATS_RELEASED = Counter("cinema_seats_released_total", "Seats given back by cancelled reservations")
RESERVATIONS = Counter("cinema_reservations_total", "Reservations by outcome", ["outcome"])

for _outcome in ("confirmed", "failed", "cancelled"):
    RESERVATIONS.labels(_outcome)


def count_committed(events: Iterable[object]) -> None:
    """Count what a committed transaction's events say happened."""
    for event in events:
        if isinstance(event, ReservationConfirmed):
            RESERVATIONS.labels("confirmed").inc()
            SEATS_SOLD.inc(len(event.seats))
        elif isinstance(event, ReservationFailed):
            RESERVATIONS.labels("failed").inc()
        elif isinstance(event, ReservationCancelled) and not event.refund_only:
            RESERVATIONS.labels("cancelled").inc()
            SEATS_RELEASED.inc(len(event.seats))
