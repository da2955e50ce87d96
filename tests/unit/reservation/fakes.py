"""In-memory fakes of every booking port, for unit tests only.

`FakeBookingStore` plays the database. A `FakeUnitOfWork` is one transaction on it: rows
it writes are staged and applied on commit, except seat claims, which (like rows under a
unique index) are visible to concurrent transactions at once and undone on rollback.
Every operation yields to the event loop, so concurrent use cases really interleave.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.kit.errors import InvalidArgument
from services.reservation.domain.errors import SeatsTaken
from services.reservation.domain.events import DomainEvent
from services.reservation.domain.reservation import Reservation, ReservationState
from services.reservation.domain.screening import MovieTitle, Screening
from services.reservation.domain.values import Money, SeatLabel
from services.reservation.service_layer.ports import (
    DuplicateRequest,
    PaymentCard,
    PaymentResult,
    PaymentUnavailable,
    ReservationPage,
    ReservationRepository,
    UnitOfWork,
)


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 25, 18, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


class ConcurrentUpdate(Exception):
    """The row changed since it was read: the optimistic guard a real adapter would enforce."""


@dataclass
class FakeBookingStore:
    reservations: dict[str, Reservation] = field(default_factory=dict)
    request_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    screenings: dict[str, Screening] = field(default_factory=dict)
    movies: dict[str, MovieTitle] = field(default_factory=dict)
    claims: dict[tuple[str, SeatLabel], str] = field(default_factory=dict)
    outbox: list[DomainEvent] = field(default_factory=list)
    row_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    inserting: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    commits: int = 0

    def events(self, kind: type[object] | None = None) -> list[DomainEvent]:
        return [e for e in self.outbox if kind is None or isinstance(e, kind)]

    def held(self, screening_id: str) -> set[SeatLabel]:
        return {seat for (sid, seat) in self.claims if sid == screening_id}


class _Transaction:
    def __init__(self, store: FakeBookingStore) -> None:
        self.store = store
        self.undo: list[Callable[[], None]] = []
        self.staged: list[Callable[[], None]] = []
        self.at_end: list[Callable[[], None]] = []
        self.locks: dict[str, asyncio.Lock] = {}

    async def lock(self, reservation_id: str) -> None:
        if reservation_id in self.locks:
            return
        lock = self.store.row_locks.setdefault(reservation_id, asyncio.Lock())
        await lock.acquire()
        self.locks[reservation_id] = lock

    def end(self, *, commit: bool) -> None:
        for action in self.staged if commit else reversed(self.undo):
            action()
        for action in self.at_end:
            action()
        self.staged.clear()
        self.undo.clear()
        self.at_end.clear()
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()


class FakeReservationRepository(ReservationRepository):
    def __init__(self, txn: _Transaction) -> None:
        super().__init__()
        self._txn = txn
        self._store = txn.store

    async def _add(self, reservation: Reservation) -> None:
        await asyncio.sleep(0)
        key = (reservation.customer_id, reservation.request_id)
        # Like PostgreSQL: an insert that collides with an uncommitted row waits for that
        # transaction, then fails if it committed, or goes ahead if it rolled back.
        while (inserting := self._store.inserting.get(key)) is not None:
            await inserting.wait()
        if key in self._store.request_keys:
            raise DuplicateRequest(key)
        self._store.request_keys[key] = reservation.id
        done = self._store.inserting[key] = asyncio.Event()
        self._txn.undo.append(lambda: self._store.request_keys.__delitem__(key))

        def inserted() -> None:
            del self._store.inserting[key]
            done.set()

        self._txn.at_end.append(inserted)
        # The row becomes readable at commit (the use cases never re-read it in phase 1).
        snapshot = _copy(reservation)
        self._txn.staged.append(lambda: self._store.reservations.__setitem__(snapshot.id, snapshot))

    async def _get(self, reservation_id: str, lock: bool) -> Reservation | None:
        await asyncio.sleep(0)
        if lock:
            await self._txn.lock(reservation_id)
        stored = self._store.reservations.get(reservation_id)
        return None if stored is None else _copy(stored)

    async def _get_by_request(self, customer_id: str, request_id: str) -> Reservation | None:
        await asyncio.sleep(0)
        reservation_id = self._store.request_keys.get((customer_id, request_id))
        stored = self._store.reservations.get(reservation_id) if reservation_id else None
        return None if stored is None else _copy(stored)

    async def _list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> ReservationPage:
        await asyncio.sleep(0)
        try:
            offset = int(page_token or "0")
        except ValueError:
            raise InvalidArgument.for_field("page_token", "not a token this service issued") from None
        mine = sorted(
            (r for r in self._store.reservations.values() if r.customer_id == customer_id),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        page = mine[offset : offset + page_size]
        more = offset + page_size < len(mine)
        return ReservationPage([_copy(r) for r in page], str(offset + page_size) if more else "")

    async def _list_pending_older_than(self, cutoff: datetime, limit: int) -> Sequence[Reservation]:
        await asyncio.sleep(0)
        pending = sorted(
            (
                r
                for r in self._store.reservations.values()
                if r.state is ReservationState.PENDING and r.created_at < cutoff
            ),
            key=lambda r: r.created_at,
        )
        return [_copy(r) for r in pending[:limit]]

    async def _list_active_for_screening(self, screening_id: str) -> Sequence[Reservation]:
        await asyncio.sleep(0)
        active = [r for r in self._store.reservations.values() if r.screening_id == screening_id and r.is_active]
        for reservation in active:
            await self._txn.lock(reservation.id)
        return [_copy(r) for r in active]

    async def _update(self, reservation: Reservation, expected_version: int) -> None:
        await asyncio.sleep(0)
        snapshot = _copy(reservation)

        def write() -> None:
            stored = self._store.reservations.get(snapshot.id)
            if stored is not None and stored.version != expected_version:
                raise ConcurrentUpdate(snapshot.id)
            self._store.reservations[snapshot.id] = snapshot

        self._txn.staged.append(write)


class FakeScreeningReplica:
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn
        self._store = txn.store

    async def get(self, screening_id: str) -> Screening | None:
        await asyncio.sleep(0)
        return self._store.screenings.get(screening_id)

    async def upsert(self, screening: Screening) -> None:
        await asyncio.sleep(0)
        self._txn.staged.append(lambda: self._store.screenings.__setitem__(screening.id, screening))

    async def list_for_movie(self, movie_id: str) -> Sequence[Screening]:
        await asyncio.sleep(0)
        return [s for s in self._store.screenings.values() if s.movie_id == movie_id]

    async def get_movie(self, movie_id: str) -> MovieTitle | None:
        await asyncio.sleep(0)
        return self._store.movies.get(movie_id)

    async def upsert_movie(self, movie: MovieTitle) -> None:
        await asyncio.sleep(0)
        self._txn.staged.append(lambda: self._store.movies.__setitem__(movie.movie_id, movie))


class FakeSeatClaims:
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn
        self._store = txn.store

    async def claim(self, screening_id: str, seats: Sequence[SeatLabel], reservation_id: str) -> None:
        await asyncio.sleep(0)
        taken = [seat for seat in seats if (screening_id, seat) in self._store.claims]
        if taken:
            raise SeatsTaken(screening_id, taken)
        for seat in seats:
            self._store.claims[(screening_id, seat)] = reservation_id
        self._txn.undo.append(lambda: self._unclaim(screening_id, seats))

    def _unclaim(self, screening_id: str, seats: Sequence[SeatLabel]) -> None:
        for seat in seats:
            self._store.claims.pop((screening_id, seat), None)

    async def release(self, reservation_id: str) -> None:
        await asyncio.sleep(0)
        mine = [key for key, owner in self._store.claims.items() if owner == reservation_id]

        def free() -> None:
            for key in mine:
                if self._store.claims.get(key) == reservation_id:
                    del self._store.claims[key]

        self._txn.staged.append(free)

    async def held_seats(self, screening_id: str) -> frozenset[SeatLabel]:
        await asyncio.sleep(0)
        return frozenset(self._store.held(screening_id))


class FakeOutbox:
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def add(self, event: DomainEvent) -> None:
        await asyncio.sleep(0)
        self._txn.staged.append(lambda: self._txn.store.outbox.append(event))


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, store: FakeBookingStore) -> None:
        self.store = store
        self._txn: _Transaction | None = None

    async def _begin(self) -> None:
        self._txn = _Transaction(self.store)
        self.reservations = FakeReservationRepository(self._txn)
        self.screenings = FakeScreeningReplica(self._txn)
        self.claims = FakeSeatClaims(self._txn)
        self.outbox = FakeOutbox(self._txn)

    async def _commit(self) -> None:
        assert self._txn is not None
        await asyncio.sleep(0)
        self._txn.end(commit=True)
        self._txn = None
        self.store.commits += 1

    async def rollback(self) -> None:
        if self._txn is not None:
            self._txn.end(commit=False)
            self._txn = None


class FakePaymentGateway:
    """Payment as booking sees it; idempotent per reservation like the real service.

    `mode`: "approve", "decline", "unavailable" (nothing recorded), "hang" (never answers),
    "invalid_card" (payment refuses the card as malformed),
    "approve_then_unavailable" (the authorization is recorded, but the answer is lost:
    the timeout-after-approval case).
    `slow_attempts`: that many attempts pass their deadline while payment goes on and records
    the outcome (a busy payment); `refusals`: retry hints of attempts refused before any work
    (payment at its concurrency limit), used up one per attempt, before `slow_attempts`.
    """

    def __init__(self) -> None:
        self.mode = "approve"
        self.decline_reason = "insufficient_funds"
        self.customers: list[tuple[str, str]] = []
        self.delay_s = 0.0
        self.payments: dict[str, PaymentResult] = {}
        self.authorize_calls: list[tuple[str, Money, str, float]] = []
        self.find_calls: list[str] = []
        self.slow_attempts = 0
        self.refusals: list[float] = []
        self._next = 0

    async def authorize(
        self,
        reservation_id: str,
        customer_id: str,
        customer_email: str,
        amount: Money,
        card: PaymentCard,
        deadline_s: float,
    ) -> PaymentResult:
        self.authorize_calls.append((reservation_id, amount, card.last4, deadline_s))
        self.customers.append((customer_id, customer_email))
        await asyncio.sleep(self.delay_s)
        if self.refusals:
            raise PaymentUnavailable("too many requests in flight", retry_after_s=self.refusals.pop(0))
        if self.slow_attempts > 0:
            self.slow_attempts -= 1
            self.payments.setdefault(reservation_id, self._decide(reservation_id))
            raise PaymentUnavailable("DEADLINE_EXCEEDED", slow=True)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "unavailable":
            raise PaymentUnavailable("connection refused")
        if self.mode == "invalid_card":
            raise InvalidArgument.for_field("card.number", "not a valid card number")
        result = self.payments.get(reservation_id) or self._decide(reservation_id)
        self.payments[reservation_id] = result
        if self.mode == "approve_then_unavailable":
            raise PaymentUnavailable("deadline exceeded")
        return result

    async def find_by_reservation(self, reservation_id: str, deadline_s: float) -> PaymentResult | None:
        self.find_calls.append(reservation_id)
        await asyncio.sleep(0)
        if self.mode in ("unavailable", "hang"):
            raise PaymentUnavailable("connection refused")
        return self.payments.get(reservation_id)

    def _decide(self, reservation_id: str) -> PaymentResult:
        self._next += 1
        payment_id = f"pay-{self._next}"
        if self.mode == "decline":
            return PaymentResult.declined(payment_id, self.decline_reason)
        return PaymentResult.approved(payment_id)


def _copy(reservation: Reservation) -> Reservation:
    clone = copy.deepcopy(reservation)
    clone.events = []
    return clone
