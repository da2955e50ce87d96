"""The Screening aggregate and the rule that no two screenings overlap in a hall.

A screening occupies its hall from its start until its movie's runtime plus a cleaning gap
later: `[start, start + runtime + gap)`. Two screenings in the same hall overlap when their
occupancies intersect; touching ends do not overlap.

The hall's occupancies are kept in one document per hall (a `Booking` per claim), and the
screening in its own document; without multi-document transactions the two are tied together
by a *claim*: a screening first records a pending claim (a fresh id) in its own document,
then adds a booking under that claim id to the hall (one conditional update that also checks
for overlaps), then confirms the claim in its own document (a conditional update that fails if
another writer revoked the claim meanwhile). A booking in the hall therefore counts only while
its screening confirms it (`claim_status`): a crash between the steps leaves a booking that
nobody confirms, which expires after the claim timeout and is then dropped by the next writer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument
from services.movie.domain.events import CatalogEvent, ScreeningCancelled, ScreeningRescheduled, ScreeningScheduled
from services.movie.domain.values import Money, SeatMap

MAX_HALL = 50


class ScreeningState(enum.StrEnum):
    PENDING = "PENDING"  # recorded, its hall booking not yet confirmed; invisible to readers
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"
    ABANDONED = "ABANDONED"  # a pending screening whose claim expired (its request died or timed out)


def require_aware(value: datetime, field_path: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument.for_field(field_path, "must be a timezone-aware time")
    return value


def validate_hall(hall: str, field_path: str = "screening.hall") -> str:
    name = hall.strip()
    if not 1 <= len(name) <= MAX_HALL:
        raise InvalidArgument.for_field(field_path, f"must be 1 to {MAX_HALL} characters")
    return name


def to_millis(value: datetime) -> datetime:
    """Times are kept to the millisecond (what the store keeps), so that what is compared, stored
    and published is the same instant."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def occupancy_end(starts_at: datetime, duration_minutes: int, cleaning_gap: timedelta) -> datetime:
    """When the hall is free again: after the movie and the cleaning gap."""
    return starts_at + timedelta(minutes=duration_minutes) + cleaning_gap


@dataclass(frozen=True)
class Booking:
    """A screening's claim on its hall for `[starts_at, ends_at)` (ends_at includes the cleaning gap)."""

    claim_id: str
    screening_id: str
    starts_at: datetime
    ends_at: datetime

    def overlaps(self, other: Booking) -> bool:
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


def overlapping(bookings: list[Booking], candidate: Booking) -> list[Booking]:
    """The bookings of other screenings that `candidate` collides with."""
    return [b for b in bookings if b.screening_id != candidate.screening_id and b.overlaps(candidate)]


class ClaimStatus(enum.Enum):
    LIVE = "live"  # confirmed, or pending and within the timeout: it blocks the hall
    EXPIRED = "expired"  # pending past the timeout: revoke it, then it is dead
    DEAD = "dead"  # nobody stands behind this booking any more: drop it


@dataclass(frozen=True)
class PendingClaim:
    """A booking being added to a hall on behalf of this screening (schedule or reschedule)."""

    claim_id: str
    hall: str
    starts_at: datetime
    ends_at: datetime
    duration_minutes: int
    since: datetime

    def booking(self, screening_id: str) -> Booking:
        return Booking(self.claim_id, screening_id, self.starts_at, self.ends_at)


def claim_status(screening: Screening | None, claim_id: str, now: datetime, timeout: timedelta) -> ClaimStatus:
    """Whether a hall booking under `claim_id` still counts, as its screening's document says."""
    if screening is None:
        return ClaimStatus.DEAD
    if screening.state is ScreeningState.SCHEDULED and screening.claim_id == claim_id:
        return ClaimStatus.LIVE
    pending = screening.pending_claim
    if pending is not None and pending.claim_id == claim_id:
        return ClaimStatus.LIVE if now - pending.since < timeout else ClaimStatus.EXPIRED
    return ClaimStatus.DEAD


def overlap_error(hall: str, starts_at: datetime, conflicts: list[Booking]) -> FailedPrecondition:
    first = conflicts[0]
    return FailedPrecondition(
        f"hall {hall!r} is taken at {starts_at.isoformat()}: screening {first.screening_id} occupies it "
        f"from {first.starts_at.isoformat()} until {first.ends_at.isoformat()} (runtime plus cleaning gap)",
        "SCREENING_OVERLAP",
        {"hall": hall, "conflicting_screening_id": first.screening_id, "busy_until": first.ends_at.isoformat()},
    )


@dataclass
class Screening:
    id: str
    movie_id: str
    movie_title: str
    duration_minutes: int
    hall: str
    starts_at: datetime
    seat_map: SeatMap
    price: Money
    created_at: datetime
    updated_at: datetime
    state: ScreeningState = ScreeningState.PENDING
    version: int = 0  # of the published life: 1 when scheduled, +1 per reschedule or cancellation
    claim_id: str = ""  # the hall booking this screening stands behind (once scheduled)
    pending_claim: PendingClaim | None = None
    cancel_reason: str = ""
    revision: int = 0  # the stored revision this copy was read at (the store's compare-and-set)
    pending: list[CatalogEvent] = field(default_factory=list)

    # ------------------------------------------------------------------- scheduling

    @classmethod
    def propose(
        cls,
        *,
        screening_id: str,
        movie_id: str,
        movie_title: str,
        duration_minutes: int,
        hall: str,
        starts_at: datetime,
        seat_map: SeatMap,
        price: Money,
        cleaning_gap: timedelta,
        claim_id: str,
        now: datetime,
    ) -> Screening:
        """A new screening, pending until its hall booking is confirmed."""
        hall = validate_hall(hall)
        starts_at = to_millis(require_aware(starts_at, "screening.start_time"))
        if starts_at <= now:
            raise InvalidArgument.for_field("screening.start_time", "must be in the future")
        return cls(
            id=screening_id,
            movie_id=movie_id,
            movie_title=movie_title,
            duration_minutes=duration_minutes,
            hall=hall,
            starts_at=starts_at,
            seat_map=seat_map,
            price=price,
            created_at=now,
            updated_at=now,
            pending_claim=PendingClaim(
                claim_id,
                hall,
                starts_at,
                occupancy_end(starts_at, duration_minutes, cleaning_gap),
                duration_minutes,
                now,
            ),
        )

    @property
    def is_visible(self) -> bool:
        """Readers see scheduled and cancelled screenings; pending and abandoned ones never existed."""
        return self.state in (ScreeningState.SCHEDULED, ScreeningState.CANCELLED)

    @property
    def booking(self) -> Booking | None:
        if self.pending_claim is not None:
            return self.pending_claim.booking(self.id)
        return None

    def _require_pending(self, claim_id: str) -> PendingClaim:
        pending = self.pending_claim
        if pending is None or pending.claim_id != claim_id:
            raise ClaimLost(self.id)
        return pending

    def confirm(self, claim_id: str, now: datetime) -> None:
        """The hall booking under `claim_id` is in: the screening is scheduled (or moved)."""
        pending = self._require_pending(claim_id)
        if self.state is ScreeningState.PENDING:
            self.state = ScreeningState.SCHEDULED
            self.version = 1
            self.claim_id = claim_id
            self.pending_claim = None
            self.updated_at = now
            self.pending.append(
                ScreeningScheduled(
                    aggregate_id=self.id,
                    version=1,
                    movie_id=self.movie_id,
                    movie_title=self.movie_title,
                    duration_minutes=self.duration_minutes,
                    hall=self.hall,
                    starts_at=self.starts_at,
                    seat_map=self.seat_map,
                    price=self.price,
                )
            )
            return
        if self.state is not ScreeningState.SCHEDULED:
            raise ClaimLost(self.id)
        previous_hall, previous_start = self.hall, self.starts_at
        self.hall, self.starts_at, self.duration_minutes = pending.hall, pending.starts_at, pending.duration_minutes
        self.claim_id = claim_id
        self.pending_claim = None
        self.updated_at = now
        self.version += 1
        self.pending.append(
            ScreeningRescheduled(
                aggregate_id=self.id,
                version=self.version,
                movie_id=self.movie_id,
                movie_title=self.movie_title,
                hall=self.hall,
                starts_at=self.starts_at,
                previous_hall=previous_hall,
                previous_starts_at=previous_start,
            )
        )

    def reject(self, claim_id: str) -> None:
        """The hall booking failed (overlap): a new screening is abandoned, a move forgotten."""
        self._require_pending(claim_id)
        self.pending_claim = None
        if self.state is ScreeningState.PENDING:
            self.state = ScreeningState.ABANDONED

    def revoke_expired(self, now: datetime, timeout: timedelta) -> bool:
        """Another writer found this screening's pending claim expired: it no longer counts."""
        pending = self.pending_claim
        if pending is None or now - pending.since < timeout:
            return False
        self.pending_claim = None
        if self.state is ScreeningState.PENDING:
            self.state = ScreeningState.ABANDONED
        return True

    def propose_move(
        self,
        *,
        hall: str,
        starts_at: datetime,
        duration_minutes: int,
        cleaning_gap: timedelta,
        claim_id: str,
        now: datetime,
    ) -> bool:
        """Ask for a new hall and/or start; returns False when that is where it already is."""
        self._require_scheduled(now)
        hall = validate_hall(hall, "hall")
        starts_at = to_millis(require_aware(starts_at, "start_time"))
        if starts_at <= now:
            raise InvalidArgument.for_field("start_time", "must be in the future")
        if hall == self.hall and starts_at == self.starts_at:
            return False
        self.pending_claim = PendingClaim(
            claim_id, hall, starts_at, occupancy_end(starts_at, duration_minutes, cleaning_gap), duration_minutes, now
        )
        return True

    def cancel(self, reason: str, now: datetime, by: Actor) -> bool:
        """Cancel (`by` whom); returns False when it already was (a repeated cancel changes nothing)."""
        if self.state is ScreeningState.CANCELLED:
            return False
        self._require_scheduled(now)
        self.state = ScreeningState.CANCELLED
        self.pending_claim = None
        self.cancel_reason = reason
        self.updated_at = now
        self.version += 1
        self.pending.append(
            ScreeningCancelled(
                aggregate_id=self.id,
                version=self.version,
                movie_id=self.movie_id,
                movie_title=self.movie_title,
                starts_at=self.starts_at,
                reason=reason,
                cancelled_by=by,
            )
        )
        return True

    def _require_scheduled(self, now: datetime) -> None:
        if self.state is not ScreeningState.SCHEDULED:
            raise FailedPrecondition(
                f"screening {self.id} is {self.state.value.lower()}",
                "SCREENING_NOT_SCHEDULED",
                {"screening_id": self.id},
            )
        if self.starts_at <= now:
            raise FailedPrecondition(
                f"screening {self.id} has already started", "SCREENING_STARTED", {"screening_id": self.id}
            )

    def with_movie_title(self, title: str) -> Screening:
        return replace(self, movie_title=title)


class ClaimLost(Exception):
    """This screening's pending claim was revoked (it took longer than the claim timeout) or replaced."""

    def __init__(self, screening_id: str) -> None:
        super().__init__(f"the hall claim of screening {screening_id} was lost")
        self.screening_id = screening_id
