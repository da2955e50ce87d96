"""In-memory fakes of the payment ports, for unit tests only.

A `FakePaymentUnitOfWork` is one transaction on a `FakePaymentStore`: writes are staged and
applied on commit, except the unique reservation index, which (like a unique index) is
taken at insert time and released on rollback. Every operation yields to the event loop.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.payment.domain.card import Card
from services.payment.domain.events import DomainEvent
from services.payment.domain.payment import Payment
from services.payment.domain.processor import DecisionKind, decide
from services.payment.domain.values import Money
from services.payment.service_layer.ports import (
    DuplicatePayment,
    PaymentRepository,
    ProcessorResponse,
    ProcessorUnavailable,
    UnitOfWork,
)


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 25, 18, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now


@dataclass
class FakePaymentStore:
    payments: dict[str, Payment] = field(default_factory=dict)
    by_reservation: dict[str, str] = field(default_factory=dict)
    outbox: list[DomainEvent] = field(default_factory=list)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    inserting: dict[str, asyncio.Event] = field(default_factory=dict)
    duplicate_inserts: int = 0

    def events(self, kind: type[object] | None = None) -> list[DomainEvent]:
        return [e for e in self.outbox if kind is None or isinstance(e, kind)]


class _Transaction:
    def __init__(self, store: FakePaymentStore) -> None:
        self.store = store
        self.staged: list[Callable[[], None]] = []
        self.undo: list[Callable[[], None]] = []
        self.held: list[asyncio.Lock] = []
        self.at_end: list[Callable[[], None]] = []

    def end(self, *, commit: bool) -> None:
        for action in self.staged if commit else reversed(self.undo):
            action()
        for action in self.at_end:
            action()
        self.staged.clear()
        self.undo.clear()
        self.at_end.clear()
        for lock in self.held:
            lock.release()
        self.held.clear()


class FakePaymentRepository(PaymentRepository):
    def __init__(self, txn: _Transaction) -> None:
        super().__init__()
        self._txn = txn
        self._store = txn.store

    async def _add(self, payment: Payment) -> None:
        await asyncio.sleep(0)
        key = payment.reservation_id
        # Like PostgreSQL: a colliding insert waits for the transaction that holds the key.
        while (inserting := self._store.inserting.get(key)) is not None:
            await inserting.wait()
        if key in self._store.by_reservation:
            self._store.duplicate_inserts += 1
            raise DuplicatePayment(key)
        self._store.by_reservation[key] = payment.id
        done = self._store.inserting[key] = asyncio.Event()
        self._txn.undo.append(lambda: self._store.by_reservation.__delitem__(key))

        def inserted() -> None:
            del self._store.inserting[key]
            done.set()

        self._txn.at_end.append(inserted)
        snapshot = _copy(payment)
        self._txn.staged.append(lambda: self._store.payments.__setitem__(snapshot.id, snapshot))

    async def _get(self, payment_id: str) -> Payment | None:
        await asyncio.sleep(0)
        stored = self._store.payments.get(payment_id)
        return None if stored is None else _copy(stored)

    async def _get_by_reservation(self, reservation_id: str, lock: bool) -> Payment | None:
        await asyncio.sleep(0)
        if lock:
            row_lock = self._store.locks.setdefault(reservation_id, asyncio.Lock())
            await row_lock.acquire()
            self._txn.held.append(row_lock)
        payment_id = self._store.by_reservation.get(reservation_id)
        stored = self._store.payments.get(payment_id) if payment_id else None
        return None if stored is None else _copy(stored)

    async def _update(self, payment: Payment, expected_version: int) -> None:
        await asyncio.sleep(0)
        snapshot = _copy(payment)
        assert self._store.payments[payment.id].version == expected_version
        self._txn.staged.append(lambda: self._store.payments.__setitem__(snapshot.id, snapshot))


class FakeOutbox:
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def add(self, event: DomainEvent) -> None:
        await asyncio.sleep(0)
        self._txn.staged.append(lambda: self._txn.store.outbox.append(event))


class FakePaymentUnitOfWork(UnitOfWork):
    def __init__(self, store: FakePaymentStore) -> None:
        self.store = store
        self._txn: _Transaction | None = None

    async def _begin(self) -> None:
        self._txn = _Transaction(self.store)
        self.payments = FakePaymentRepository(self._txn)
        self.outbox = FakeOutbox(self._txn)

    async def _commit(self) -> None:
        assert self._txn is not None
        self._txn.end(commit=True)
        self._txn = None

    async def rollback(self) -> None:
        if self._txn is not None:
            self._txn.end(commit=False)
            self._txn = None


class FakeCardProcessor:
    """The simulated processor: `decide()` per card, idempotent per reference, optional failure/latency."""

    def __init__(self) -> None:
        self.failing = False
        self.delay_s = 0.0
        self.charges: Counter[str] = Counter()  # reference -> times money was actually taken
        self.calls: list[tuple[str, str]] = []  # (reference, repr of the card)
        self._answers: dict[str, ProcessorResponse] = {}

    async def authorize(self, reference: str, card: Card, amount: Money) -> ProcessorResponse:
        self.calls.append((reference, repr(card)))
        await asyncio.sleep(self.delay_s)
        if self.failing:
            raise ProcessorUnavailable("injected failure")
        if reference in self._answers:
            return self._answers[reference]
        decision = decide(card, amount)
        if decision.kind is DecisionKind.PROCESSOR_ERROR:
            raise ProcessorUnavailable("processor error")
        response = ProcessorResponse(decision.kind is DecisionKind.APPROVED, decision.decline_reason)
        if response.approved:
            self.charges[reference] += 1
        self._answers[reference] = response
        return response


def _copy(payment: Payment) -> Payment:
    clone = copy.deepcopy(payment)
    clone.events = []
    return clone
