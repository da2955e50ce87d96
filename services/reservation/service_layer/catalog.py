"""Handlers of the catalog's events: keep the screening replica, cancel reservations of a
cancelled screening.

The events arrive at least once and possibly out of order (redelivery), so each handler is
order-safe by version (the envelope's `aggregate_version` of the screening or the movie):
an event whose version is not newer than the replica's is a no-op and returns False.
A cancellation is final: no later version brings a screening back; a cancellation of a
screening never seen leaves a tombstone so that a late `ScreeningScheduled` stays dead.
`ScreeningRescheduled` carries only hall and time: for a screening not yet in the replica
it raises ScreeningNotYetKnown, and the consumer redelivers it later (after the schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.actor import Actor
from services.reservation.domain.reservation import SCREENING_CANCELLED
from services.reservation.domain.screening import MovieTitle, Screening, ScreeningStatus
from services.reservation.domain.values import Money, SeatMap
from services.reservation.service_layer.dependencies import BookingDependencies

# ------------------------------------------------------------------- incoming catalog events


@dataclass(frozen=True)
class ScreeningScheduled:
    screening_id: str
    movie_id: str
    hall: str
    starts_at: datetime
    seat_map: SeatMap
    price: Money
    version: int
    movie_title: str = ""  # used only while the replica has no MovieTitle of its own


@dataclass(frozen=True)
class ScreeningRescheduled:
    """Hall and start time after the change; seat map and price stay as they were."""

    screening_id: str
    hall: str
    starts_at: datetime
    version: int


@dataclass(frozen=True)
class ScreeningCancelled:
    screening_id: str
    version: int
    reason: str = ""  # the catalog's reason, passed on to the cancelled reservations


class ScreeningNotYetKnown(Exception):
    """An event about a screening the replica has not seen scheduled: redeliver it later."""


@dataclass(frozen=True)
class MovieRegistered:
    movie_id: str
    title: str
    version: int


@dataclass(frozen=True)
class MovieUpdated(MovieRegistered):
    pass


# ------------------------------------------------------------------------------- handlers


async def on_screening_rescheduled(event: ScreeningRescheduled, deps: BookingDependencies) -> bool:
    # Reservations already taken keep their seats and price: a move to a hall whose map
    # strands them is the catalog's business to prevent (or to follow with a cancellation).
    async with deps.uow() as uow:
        current = await uow.screenings.get(event.screening_id)
        if current is None:
            raise ScreeningNotYetKnown(event.screening_id)
        if not current.is_superseded_by(event.version):
            return False
        await uow.screenings.upsert(current.rescheduled(event.hall, event.starts_at, event.version))
        await uow.commit()
        return True


async def on_screening_scheduled(event: ScreeningScheduled, deps: BookingDependencies) -> bool:
    async with deps.uow() as uow:
        current = await uow.screenings.get(event.screening_id)
        if current is not None and not current.is_superseded_by(event.version):
            return False
        movie = await uow.screenings.get_movie(event.movie_id)
        cancelled = current is not None and current.is_cancelled
        status = ScreeningStatus.CANCELLED if cancelled else ScreeningStatus.SCHEDULED
        await uow.screenings.upsert(
            Screening(
                id=event.screening_id,
                movie_id=event.movie_id,
                movie_title=movie.title if movie is not None else event.movie_title,
                hall=event.hall,
                starts_at=event.starts_at,
                seat_map=event.seat_map,
                price=event.price,
                version=event.version,
                status=status,
            )
        )
        await uow.commit()
        return True


async def on_screening_cancelled(event: ScreeningCancelled, deps: BookingDependencies) -> bool:
    """Mark the screening cancelled and cancel its active reservations, in one transaction.

    Each cancelled reservation emits ReservationCancelled (by the system, cause
    SCREENING_CANCELLED, with the catalog's reason), so payment refunds it.
    """
    async with deps.uow() as uow:
        current = await uow.screenings.get(event.screening_id)
        if current is not None and not current.is_superseded_by(event.version):
            return False
        if current is None:
            await uow.screenings.upsert(Screening.tombstone(event.screening_id, event.version))
        else:
            await uow.screenings.upsert(current.cancelled(event.version))
        now = deps.clock.now()
        for reservation in await uow.reservations.list_active_for_screening(event.screening_id):
            reservation.cancel(Actor.system(SCREENING_CANCELLED), event.reason or SCREENING_CANCELLED, now)
            await uow.claims.release(reservation.id)
        await uow.commit()
        return True


async def on_movie_registered(event: MovieRegistered, deps: BookingDependencies) -> bool:
    return await _apply_movie_title(event, deps)


async def on_movie_updated(event: MovieUpdated, deps: BookingDependencies) -> bool:
    return await _apply_movie_title(event, deps)


async def _apply_movie_title(event: MovieRegistered, deps: BookingDependencies) -> bool:
    async with deps.uow() as uow:
        current = await uow.screenings.get_movie(event.movie_id)
        if current is not None and event.version <= current.version:
            return False
        await uow.screenings.upsert_movie(MovieTitle(event.movie_id, event.title, event.version))
        for screening in await uow.screenings.list_for_movie(event.movie_id):
            if screening.movie_title != event.title:
                await uow.screenings.upsert(screening.with_movie_title(event.title))
        await uow.commit()
        return True
