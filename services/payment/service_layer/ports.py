"""Ports of the payment service: its store (repository, outbox, unit of work), the card
processor and the clock. Adapters implement them (asyncpg, a simulated processor with
latency/failure injection); unit tests implement them in memory.

One `UnitOfWork` is one database transaction; `commit()` moves the domain events of every
payment it has seen into the outbox, writes back changed payments, then commits.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.kit.unit_of_work import RaisesEvents
from services.kit.unit_of_work import UnitOfWork as KitUnitOfWork
from services.payment.domain.card import Card
from services.payment.domain.events import DomainEvent
from services.payment.domain.payment import Payment
from services.payment.domain.values import Money


class DuplicatePayment(Exception):
    """Raised by `PaymentRepository.add` when the reservation already has a payment (the
    adapter maps the unique violation on reservation_id to it); the use case then returns
    the payment the concurrent twin call stored."""


class PaymentRepository(abc.ABC):
    """Payments, inside one unit of work; at most one per reservation (unique reservation_id).

    Public methods remember what they hand out (`seen`); adapters implement the underscored
    ones. `_update` persists a payment whose `version` changed since it was loaded.
    """

    def __init__(self) -> None:
        self.seen: set[Payment] = set()
        self._loaded_version: dict[str, int] = {}

    async def add(self, payment: Payment) -> None:
        """Insert now. Raises DuplicatePayment (see there)."""
        await self._add(payment)
        self._track(payment)

    async def get(self, payment_id: str) -> Payment | None:
        return self._track_optional(await self._get(payment_id))

    async def get_by_reservation(self, reservation_id: str, *, lock: bool = False) -> Payment | None:
        """`lock=True`: SELECT ... FOR UPDATE, so that two refunds of one payment serialize."""
        return self._track_optional(await self._get_by_reservation(reservation_id, lock))

    async def flush(self) -> None:
        for payment in self.seen:
            if payment.version != self._loaded_version[payment.id]:
                await self._update(payment, self._loaded_version[payment.id])
                self._loaded_version[payment.id] = payment.version

    def _track(self, payment: Payment) -> Payment:
        if payment not in self.seen:
            self.seen.add(payment)
            self._loaded_version.setdefault(payment.id, payment.version)
        return payment

    def _track_optional(self, payment: Payment | None) -> Payment | None:
        return None if payment is None else self._track(payment)

    @abc.abstractmethod
    async def _add(self, payment: Payment) -> None: ...

    @abc.abstractmethod
    async def _get(self, payment_id: str) -> Payment | None: ...

    @abc.abstractmethod
    async def _get_by_reservation(self, reservation_id: str, lock: bool) -> Payment | None: ...

    @abc.abstractmethod
    async def _update(self, payment: Payment, expected_version: int) -> None: ...


class Outbox(Protocol):
    async def add(self, event: DomainEvent) -> None: ...


class UnitOfWork(KitUnitOfWork):
    """`async with uow: ...; await uow.commit()`; leaving without commit rolls back.

    Adapters set `payments` and `outbox` (in `_begin`) and implement `_begin`, `_commit`
    and `rollback` (a no-op after commit: `__aexit__` always calls it).
    """

    payments: PaymentRepository
    outbox: Outbox

    def _seen(self) -> Iterable[RaisesEvents]:
        return self.payments.seen

    async def _flush(self) -> None:
        await self.payments.flush()

    async def _outbox_add(self, event: DomainEvent) -> None:
        await self.outbox.add(event)


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class ProcessorUnavailable(Exception):
    """The processor gave no decision: its error, an injected failure, or a timeout. Nothing was charged."""


@dataclass(frozen=True)
class ProcessorResponse:
    approved: bool
    decline_reason: str | None = None  # set when not approved, e.g. "insufficient_funds"


class CardProcessor(Protocol):
    """The card network. The simulated adapter answers with `domain.processor.decide` after
    its configured latency, and fails (ProcessorUnavailable) as its settings inject."""

    async def authorize(self, reference: str, card: Card, amount: Money) -> ProcessorResponse:
        """Authorize and capture. `reference` (the reservation id) is the processor's
        idempotency key: a repeat with the same reference never charges twice.
        Raises ProcessorUnavailable."""
        ...


class Clock(Protocol):
    """Now, timezone-aware (UTC). Not async: reading the time is not I/O."""

    def now(self) -> datetime: ...
