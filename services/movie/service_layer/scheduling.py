"""Use cases on screenings: schedule, reschedule, cancel, read, list.

Scheduling and rescheduling book the hall in three single-document steps (see
services.movie.domain.screening): record a pending claim on the screening, add the booking
to the hall document with a compare-and-set on the hall's revision (checking overlaps against
the bookings that still count), confirm the claim on the screening with a compare-and-set on
its revision (the screening's event is written in that update). Two managers booking the same
hall at once both read the hall at revision n; only one compare-and-set from n succeeds, and
the other re-reads, finds the winner's booking (live: confirmed or pending within the claim
timeout) and is refused with FAILED_PRECONDITION.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, overload

from services.kit.actor import Actor
from services.kit.errors import InvalidArgument, NotFound, Unavailable
from services.movie.domain.screening import (
    Booking,
    ClaimLost,
    ClaimStatus,
    Screening,
    ScreeningState,
    claim_status,
    overlap_error,
    overlapping,
)
from services.movie.domain.values import Money, SeatMap
from services.movie.service_layer import pages
from services.movie.service_layer.catalog import MOVIE_WITHDRAWN, WITHDRAWN_BY, WRITE_ATTEMPTS, get_movie
from services.movie.service_layer.dependencies import CatalogDependencies, id_for_request, new_id
from services.movie.service_layer.ports import ScreeningQuery

log = logging.getLogger(__name__)

HALL_ATTEMPTS = 20  # compare-and-set rounds on a busy hall before answering UNAVAILABLE


@dataclass(frozen=True)
class ScreeningPage:
    screenings: list[Screening]
    next_page_token: str = ""


def _conflict(what: str) -> Unavailable:
    return Unavailable(f"{what} kept changing under this request; retry", retry_after_s=0.1, reason="WRITE_CONFLICT")


def _claim_lost(screening_id: str) -> Unavailable:
    return Unavailable(
        f"booking the hall for screening {screening_id} took longer than the claim timeout; retry",
        retry_after_s=0.5,
        reason="HALL_CLAIM_EXPIRED",
    )


async def get_screening(screening_id: str, deps: CatalogDependencies) -> Screening:
    screening = await deps.screenings.get(screening_id)
    if screening is None or not screening.is_visible:
        raise NotFound("screening", screening_id)
    return screening


async def list_screenings(
    movie_id: str, page_size: int, page_token: str, show_cancelled: bool, deps: CatalogDependencies
) -> ScreeningPage:
    await get_movie(movie_id, deps)
    size = pages.page_size(page_size, deps.default_page_size)
    after_key = pages.decode(page_token, 2)
    after: tuple[datetime, str] | None = None
    if after_key is not None:
        try:
            after = (datetime.fromisoformat(after_key[0]), after_key[1])
        except ValueError:
            after = None
        if after is None or after[0].tzinfo is None:
            raise InvalidArgument.for_field("page_token", "is not a token of this list")
    found = list(
        await deps.screenings.list_for_movie(
            ScreeningQuery(movie_id=movie_id, page_size=size, include_cancelled=show_cancelled, after=after)
        )
    )
    if len(found) > size:
        last = found[size - 1]
        return ScreeningPage(found[:size], pages.encode(last.starts_at.isoformat(), last.id))
    return ScreeningPage(found)


async def schedule_screening(
    movie_id: str,
    hall: str,
    starts_at: datetime,
    seat_map: SeatMap,
    price: Money,
    idempotency_key: str,
    deps: CatalogDependencies,
) -> Screening:
    movie = await get_movie(movie_id, deps)
    now = deps.clock.now()
    screening = Screening.propose(
        screening_id=id_for_request("screening", idempotency_key),
        movie_id=movie.id,
        movie_title=movie.title,
        duration_minutes=movie.details.duration_minutes,
        hall=hall,
        starts_at=starts_at,
        seat_map=seat_map,
        price=price,
        cleaning_gap=deps.cleaning_gap,
        claim_id=new_id(),
        now=now,
    )
    if not await deps.screenings.add(screening):
        existing = await deps.screenings.get(screening.id)  # a retried request
        if existing is None:
            raise _conflict(f"screening {screening.id}")
        if existing.is_visible:
            return existing
        if existing.state is ScreeningState.PENDING:
            raise Unavailable("the first attempt of this request is still booking the hall; retry", 0.5)
        # The first attempt was refused or died: try again under the same id.
        screening.revision = existing.revision
        if not await deps.screenings.save(screening):
            raise _conflict(f"screening {screening.id}")
    await _book_hall(screening, deps)
    await _confirm(screening, deps)
    # A delete of the movie may have run while we booked: it could not see this screening yet.
    current = await deps.movies.get(movie_id)
    if current is None or current.deleted:
        cancelled = await cancel_screening(screening.id, MOVIE_WITHDRAWN, deps, by=WITHDRAWN_BY, changed_only=True)
        return cancelled or await get_screening(screening.id, deps)
    return screening


async def reschedule_screening(
    screening_id: str, starts_at: datetime, hall: str, deps: CatalogDependencies
) -> Screening:
    for _ in range(WRITE_ATTEMPTS):
        screening = await get_screening(screening_id, deps)
        movie = await deps.movies.get(screening.movie_id)
        duration = movie.details.duration_minutes if movie is not None else screening.duration_minutes
        previous = (screening.hall, screening.claim_id)
        moving = screening.propose_move(
            hall=hall or screening.hall,
            starts_at=starts_at,
            duration_minutes=duration,
            cleaning_gap=deps.cleaning_gap,
            claim_id=new_id(),
            now=deps.clock.now(),
        )
        if not moving:
            return screening
        if not await deps.screenings.save(screening):
            continue  # changed meanwhile (another reschedule, a cancel): read it again
        await _book_hall(screening, deps)
        await _confirm(screening, deps)
        await deps.halls.release(*previous)
        return screening
    raise _conflict(f"screening {screening_id}")


@overload
async def cancel_screening(
    screening_id: str, reason: str, deps: CatalogDependencies, *, by: Actor, changed_only: Literal[True]
) -> Screening | None: ...
@overload
async def cancel_screening(
    screening_id: str, reason: str, deps: CatalogDependencies, *, by: Actor, changed_only: Literal[False] = False
) -> Screening: ...
async def cancel_screening(
    screening_id: str, reason: str, deps: CatalogDependencies, *, by: Actor, changed_only: bool = False
) -> Screening | None:
    """Cancel (idempotent: cancelling a cancelled screening returns it unchanged, or None with
    `changed_only`, as the deletion sweep wants to count only its own cancellations).

    `by` is who cancels: the manager calling, or the system when the movie was withdrawn; the
    event says so, and booking's notices follow from it."""
    for _ in range(WRITE_ATTEMPTS):
        screening = await get_screening(screening_id, deps)
        claim = (screening.hall, screening.claim_id)
        if not screening.cancel(reason, deps.clock.now(), by):
            return None if changed_only else screening
        if await deps.screenings.save(screening):
            deps.events_written()
            await deps.halls.release(*claim)
            return screening
    raise _conflict(f"screening {screening_id}")


async def _book_hall(screening: Screening, deps: CatalogDependencies) -> None:
    """Add the screening's pending booking to its hall, or refuse it on an overlap."""
    pending = screening.pending_claim
    assert pending is not None, "propose a claim first"
    candidate = pending.booking(screening.id)
    for _ in range(HALL_ATTEMPTS):
        now = deps.clock.now()
        hall = await deps.halls.get(pending.hall)
        # A booking that ended before the candidate starts can never collide again: tidy it away.
        horizon = min(now, candidate.starts_at)
        remove = [b.claim_id for b in hall.bookings if b.ends_at <= horizon]
        conflicts: list[Booking] = []
        settled = True
        for booking in overlapping(list(hall.bookings), candidate):
            status = await _status_of(booking, now, deps)
            if status is ClaimStatus.LIVE:
                conflicts.append(booking)
            elif status is ClaimStatus.DEAD:
                remove.append(booking.claim_id)
            else:
                settled = False  # someone revoked or confirmed it meanwhile: look again
        if conflicts:
            await _reject(screening, deps)
            raise overlap_error(pending.hall, pending.starts_at, conflicts)
        if settled and await deps.halls.change(pending.hall, hall.revision, candidate, remove):
            return
    raise _conflict(f"hall {pending.hall!r}")


async def _status_of(booking: Booking, now: datetime, deps: CatalogDependencies) -> ClaimStatus:
    """LIVE or DEAD; an expired pending claim is revoked first (EXPIRED if that raced)."""
    owner = await deps.screenings.get(booking.screening_id)
    status = claim_status(owner, booking.claim_id, now, deps.claim_timeout)
    if status is not ClaimStatus.EXPIRED:
        return status
    assert owner is not None
    # Revoke on the owner's own document: its confirm (a compare-and-set on the same revision)
    # then fails, so the owner can never confirm a booking we are about to drop.
    if owner.revoke_expired(now, deps.claim_timeout) and await deps.screenings.save(owner):
        log.warning("revoked the expired hall claim of screening %s", owner.id)
        return ClaimStatus.DEAD
    return ClaimStatus.EXPIRED


async def _confirm(screening: Screening, deps: CatalogDependencies) -> None:
    pending = screening.pending_claim
    assert pending is not None
    try:
        screening.confirm(pending.claim_id, deps.clock.now())
    except ClaimLost:
        raise _claim_lost(screening.id) from None
    if not await deps.screenings.save(screening):
        # Revoked (we were too slow) or cancelled meanwhile: our booking no longer counts.
        await deps.halls.release(pending.hall, pending.claim_id)
        raise _claim_lost(screening.id)
    deps.events_written()


async def _reject(screening: Screening, deps: CatalogDependencies) -> None:
    pending = screening.pending_claim
    assert pending is not None
    try:
        screening.reject(pending.claim_id)
    except ClaimLost:
        return
    # Best effort: were this lost, the claim would expire on its own.
    if not await deps.screenings.save(screening):
        log.info("screening %s changed while its hall booking was refused", screening.id)


__all__ = [
    "ScreeningPage",
    "cancel_screening",
    "get_screening",
    "list_screenings",
    "reschedule_screening",
    "schedule_screening",
]
