"""Ports of the booking core: what the use cases need from the outside world.

Adapters (PostgreSQL via asyncpg, the payment gRPC client, NATS) implement these; unit tests
implement them in memory. Everything that does I/O is async.

Transaction model: one `UnitOfWork` is one database transaction. Its repositories, seat
claims and outbox all write inside that transaction; `commit()` first moves the domain
events of every aggregate the unit of work has seen into the outbox, then commits. Leaving
the `async with` block without `commit()` rolls back.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.kit.unit_of_work import RaisesEvents
from services.kit.unit_of_work import UnitOfWork as KitUnitOfWork
from services.reservation.domain.events import DomainEvent
from services.reservation.domain.reservation import Reservation
from services.reservation.domain.screening import MovieTitle, Screening
from services.reservation.domain.values import Money, SeatLabel

# --------------------------------------------------------------------------- repositories


class DuplicateRequest(Exception):
    """Raised by `ReservationRepository.add` when (customer_id, request_id) is already stored.

    The adapter maps the unique-constraint violation to this; the use case then returns the
    reservation the concurrent twin request created.
    """


@dataclass(frozen=True)
class ReservationPage:
    """One page of a customer's reservations, newest first; `next_page_token` is "" on the last page."""

    reservations: Sequence[Reservation]
    next_page_token: str = ""


class ReservationRepository(abc.ABC):
    """Reservations, inside one unit of work.

    The public methods remember every aggregate they hand out (`seen`), so the unit of work
    can collect their events and write back their changes; adapters implement the
    underscored methods. An adapter's `_update` persists a reservation whose `version`
    changed since it was loaded (it may guard with `WHERE version = <loaded>`).
    """

    def __init__(self) -> None:
        self.seen: set[Reservation] = set()
        self._loaded_version: dict[str, int] = {}

    async def add(self, reservation: Reservation) -> None:
        """Insert now (the seat claims refer to it). Raises DuplicateRequest (see there)."""
        await self._add(reservation)
        self._track(reservation)

    async def get(self, reservation_id: str, *, lock: bool = False) -> Reservation | None:
        """By id. `lock=True` takes a row lock (SELECT ... FOR UPDATE) until the transaction
        ends, so that two settlements of one reservation (create, reconciler, cancel) serialize."""
        return self._track_optional(await self._get(reservation_id, lock))

    async def get_by_request(self, customer_id: str, request_id: str) -> Reservation | None:
        """The reservation a customer created with this idempotency key, if any."""
        return self._track_optional(await self._get_by_request(customer_id, request_id))

    async def list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> ReservationPage:
        """A customer's reservations, newest first (created_at desc, then id). `page_token` is ""
        for the first page or a token this method returned; an invalid token raises
        InvalidArgument (field `page_token`)."""
        page = await self._list_for_customer(customer_id, page_size, page_token)
        for reservation in page.reservations:
            self._track(reservation)
        return page

    async def list_pending_older_than(self, cutoff: datetime, limit: int) -> Sequence[Reservation]:
        """PENDING reservations created before `cutoff`, oldest first, at most `limit`."""
        return [self._track(r) for r in await self._list_pending_older_than(cutoff, limit)]

    async def list_active_for_screening(self, screening_id: str) -> Sequence[Reservation]:
        """PENDING and CONFIRMED reservations of a screening, locked like `get(lock=True)`."""
        return [self._track(r) for r in await self._list_active_for_screening(screening_id)]

    async def flush(self) -> None:
        """Write back every seen reservation changed since it was loaded (called by commit)."""
        for reservation in self.seen:
            if reservation.version != self._loaded_version[reservation.id]:
                await self._update(reservation, self._loaded_version[reservation.id])
                self._loaded_version[reservation.id] = reservation.version

    def _track(self, reservation: Reservation) -> Reservation:
        if reservation not in self.seen:
            self.seen.add(reservation)
            self._loaded_version.setdefault(reservation.id, reservation.version)
        return reservation

    def _track_optional(self, reservation: Reservation | None) -> Reservation | None:
        return None if reservation is None else self._track(reservation)

    @abc.abstractmethod
    async def _add(self, reservation: Reservation) -> None: ...

    @abc.abstractmethod
    async def _get(self, reservation_id: str, lock: bool) -> Reservation | None: ...

    @abc.abstractmethod
    async def _get_by_request(self, customer_id: str, request_id: str) -> Reservation | None: ...

    @abc.abstractmethod
    async def _list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> ReservationPage: ...

    @abc.abstractmethod
    async def _list_pending_older_than(self, cutoff: datetime, limit: int) -> Sequence[Reservation]: ...

    @abc.abstractmethod
    async def _list_active_for_screening(self, screening_id: str) -> Sequence[Reservation]: ...

    @abc.abstractmethod
    async def _update(self, reservation: Reservation, expected_version: int) -> None: ...


class ScreeningReplicaRepository(Protocol):
    """The local replica of the catalog: screenings and movie titles."""

    async def get(self, screening_id: str) -> Screening | None: ...

    async def upsert(self, screening: Screening) -> None:
        """Insert or replace by id (the use case has already checked the version)."""
        ...

    async def list_for_movie(self, movie_id: str) -> Sequence[Screening]: ...

    async def get_movie(self, movie_id: str) -> MovieTitle | None: ...

    async def upsert_movie(self, movie: MovieTitle) -> None: ...


class SeatClaims(Protocol):
    """Which seats of a screening are held, by which active reservation.

    The adapter's table has a unique constraint on (screening_id, seat): that, not a prior
    read, is what makes double booking impossible.
    """

    async def claim(self, screening_id: str, seats: Sequence[SeatLabel], reservation_id: str) -> None:
        """Hold all the seats for the reservation, or none: raises
        services.reservation.domain.errors.SeatsTaken naming the seats already held."""
        ...

    async def release(self, reservation_id: str) -> None:
        """Free every seat the reservation holds (no-op if it holds none)."""
        ...

    async def held_seats(self, screening_id: str) -> frozenset[SeatLabel]:
        """Seats held by active reservations of the screening (committed ones)."""
        ...


class Outbox(Protocol):
    """Events to publish, stored in the same transaction as the state that raised them."""

    async def add(self, event: DomainEvent) -> None: ...


class UnitOfWork(KitUnitOfWork):
    """One transaction over the booking store: `async with uow: ...; await uow.commit()`.

    Adapters set the four attributes (typically in `_begin`, from one connection) and
    implement `_begin`, `_commit` and `rollback`. `rollback` after `commit` must be a no-op,
    because `__aexit__` always calls it.
    """

    reservations: ReservationRepository
    screenings: ScreeningReplicaRepository
    claims: SeatClaims
    outbox: Outbox

    def _seen(self) -> Iterable[RaisesEvents]:
        return self.reservations.seen

    async def _flush(self) -> None:
        await self.reservations.flush()

    async def _outbox_add(self, event: DomainEvent) -> None:
        await self.outbox.add(event)


class UnitOfWorkFactory(Protocol):
    """A fresh unit of work per transaction (create_reservation uses two)."""

    def __call__(self) -> UnitOfWork: ...


# --------------------------------------------------------------------------- payment


class PaymentUnavailable(Exception):
    """Payment could not give an answer: unreachable, deadline passed, circuit breaker open,
    too busy to take the call, or the processor failed. The outcome of an authorization may be
    unknown (payment finishes an authorization it has started even when our deadline passes);
    a repeat of it, or `find_by_reservation`, tells later.

    `slow` says the call reached its deadline (payment may be working on it: a repeat joins
    that work); `retry_after_s` is payment's own hint (google.rpc.RetryInfo) when it gave one,
    e.g. when it refused the call before starting any work because it was at its concurrency
    limit. Neither set: payment is unreachable (down, restarting, breaker open).
    """

    def __init__(self, message: str, *, slow: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.slow = slow
        self.retry_after_s = retry_after_s


class PaymentStatus(enum.StrEnum):
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


@dataclass(frozen=True)
class PaymentResult:
    """Payment's answer about the payment of one reservation."""

    status: PaymentStatus
    payment_id: str
    decline_reason: str | None = None  # e.g. INSUFFICIENT_FUNDS, when DECLINED

    @classmethod
    def approved(cls, payment_id: str) -> PaymentResult:
        return cls(PaymentStatus.APPROVED, payment_id)

    @classmethod
    def declined(cls, payment_id: str, reason: str) -> PaymentResult:
        return cls(PaymentStatus.DECLINED, payment_id, reason)


@dataclass(frozen=True)
class PaymentCard:
    """Card details passed through to payment; booking neither validates nor keeps them.

    Only the last four digits ever appear in repr/str (and so in logs and tracebacks).
    """

    number: str = field(repr=False)
    expiry_month: int = field(repr=False)
    expiry_year: int = field(repr=False)
    cvc: str = field(repr=False)
    last4: str = field(init=False)

    def __post_init__(self) -> None:
        digits = "".join(ch for ch in self.number if ch.isdigit())
        object.__setattr__(self, "last4", digits[-4:])

    def __str__(self) -> str:
        return f"card ending {self.last4}"


class PaymentGateway(Protocol):
    """The payment service, called synchronously (gRPC through the mesh)."""

    async def authorize(
        self,
        reservation_id: str,
        customer_id: str,
        customer_email: str,
        amount: Money,
        card: PaymentCard,
        deadline_s: float,
    ) -> PaymentResult:
        """Authorize `amount` for the reservation, idempotent per reservation on payment's
        side (a repeat returns the first outcome). `deadline_s` is the gRPC timeout in
        seconds. Raises PaymentUnavailable (UNAVAILABLE, DEADLINE_EXCEEDED, breaker overflow,
        any transport error) instead of hanging, and services.kit.errors.InvalidArgument
        (with payment's field violations, e.g. `card.number`) when payment rejects the card
        as malformed or expired."""
        ...

    async def find_by_reservation(self, reservation_id: str, deadline_s: float) -> PaymentResult | None:
        """The payment of a reservation, or None if payment has none. Raises PaymentUnavailable."""
        ...


# --------------------------------------------------------------------------- time


class Clock(Protocol):
    """Now, timezone-aware (UTC). Not async: reading the time is not I/O."""

    def now(self) -> datetime: ...
