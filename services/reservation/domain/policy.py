"""The booking policy: may this customer reserve these seats of this screening now?

A pure function of the request, the replica's screening and the time. It checks what can be
known without touching the seat claims; whether a seat is already held is decided by the
claim itself (a unique constraint), because only that is safe under concurrency.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.reservation.domain.screening import Screening
from services.reservation.domain.values import SeatLabel

MIN_SEATS = 1
MAX_SEATS = 10


def parse_seats(seats: Sequence[str]) -> tuple[SeatLabel, ...]:
    """Parse the requested seat labels: 1..10 of them, each well formed, no seat twice.

    Raises InvalidArgument listing every bad entry (field `seats` or `seats[i]`).
    """
    if not MIN_SEATS <= len(seats) <= MAX_SEATS:
        raise InvalidArgument.for_field("seats", f"reserve {MIN_SEATS} to {MAX_SEATS} seats, got {len(seats)}")
    violations: list[FieldViolation] = []
    parsed: list[SeatLabel] = []
    seen: set[SeatLabel] = set()
    for index, text in enumerate(seats):
        try:
            seat = SeatLabel.parse(text, f"seats[{index}]")
        except InvalidArgument as error:
            violations.extend(error.violations)
            continue
        if seat in seen:
            violations.append(FieldViolation(f"seats[{index}]", f"seat {seat} is requested twice"))
        seen.add(seat)
        parsed.append(seat)
    if violations:
        raise InvalidArgument("; ".join(f"{v.field}: {v.description}" for v in violations), tuple(violations))
    return tuple(parsed)


def check_reservation_request(
    screening_id: str,
    screening: Screening | None,
    seats: Sequence[str],
    now: datetime,
) -> tuple[SeatLabel, ...]:
    """Validate a reservation request against the replica; return the seats, sorted.

    Order of checks: the request alone (InvalidArgument), then the screening's existence
    (NotFound), its state (FailedPrecondition SCREENING_CANCELLED / SCREENING_STARTED),
    then the seats against its map (InvalidArgument on `seats[i]`).
    """
    if not screening_id:
        raise InvalidArgument.for_field("screening", "a screening id is required")
    labels = parse_seats(seats)
    if screening is None:
        raise NotFound("screening", screening_id)
    if screening.is_cancelled:
        raise FailedPrecondition(
            f"screening {screening_id} was cancelled",
            reason="SCREENING_CANCELLED",
            metadata={"screening": screening_id},
        )
    if screening.has_started(now):
        raise FailedPrecondition(
            f"screening {screening_id} started at {screening.starts_at.isoformat()}",
            reason="SCREENING_STARTED",
            metadata={"screening": screening_id, "starts_at": screening.starts_at.isoformat()},
        )
    violations: list[FieldViolation] = []
    for index, seat in enumerate(labels):
        if not screening.seat_map.contains(seat):
            violations.append(FieldViolation(f"seats[{index}]", f"seat {seat} is not in hall {screening.hall}"))
        elif seat in screening.seat_map.blocked:
            violations.append(FieldViolation(f"seats[{index}]", f"seat {seat} is blocked and never sold"))
    if violations:
        raise InvalidArgument("; ".join(f"{v.field}: {v.description}" for v in violations), tuple(violations))
    return tuple(sorted(labels))
