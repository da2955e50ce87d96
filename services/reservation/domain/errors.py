"""Booking-specific failures, as subclasses of the kit's typed errors (one gRPC status each)."""

from __future__ import annotations

from collections.abc import Iterable

from services.kit.errors import FailedPrecondition
from services.reservation.domain.values import SeatLabel


class SeatsTaken(FailedPrecondition):
    """Some of the requested seats are held by another active reservation."""

    def __init__(self, screening_id: str, seats: Iterable[SeatLabel]) -> None:
        self.seats = tuple(sorted(set(seats)))
        labels = ",".join(str(seat) for seat in self.seats)
        super().__init__(
            f"seats already taken: {labels}",
            reason="SEATS_TAKEN",
            metadata={"screening": screening_id, "seats": labels},
        )
