"""The simulated card processor: the domain's test-card decision, after a configurable latency,
with configurable injected failures (the chaos suite turns these up through settings).

Idempotent per reference (the reservation id), like a real processor's idempotency key: a repeat
returns the first answer and never charges twice. A real processor is one system for every
payment instance; so is this one when given a ledger (`PgProcessorLedger`, a table in payment's
database standing for the processor's own records): the first answer recorded for a reference is
the one every instance gets, and only its recorder charges. Without a ledger (unit tests, a
single process) it remembers answers in memory only, and two processes would charge twice.
It waits with `asyncio.sleep`, so a slow processor never blocks the event loop, and a caller
whose deadline passes cancels the wait before anything is charged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, OrderedDict
from typing import Protocol

import asyncpg
from prometheus_client import Counter as MetricCounter

from services.payment.adapters import metrics as payment_metrics
from services.payment.domain.card import Card
from services.payment.domain.processor import DecisionKind, decide
from services.payment.domain.values import Money
from services.payment.service_layer.ports import ProcessorResponse, ProcessorUnavailable

log = logging.getLogger(__name__)

PROCESSOR_CALLS = MetricCounter(
    "cinema_payment_processor_calls_total", "Authorizations asked of the card processor", ["outcome"]
)

_REMEMBERED_ANSWERS = 100_000  # references remembered for idempotency; older ones are forgotten


class ProcessorLedger(Protocol):
    """The processor's own record of its answers, shared by every instance that asks it."""

    async def first_answer(self, reference: str, answer: ProcessorResponse) -> tuple[ProcessorResponse, bool]:
        """The answer recorded for `reference`: `answer` if none was (then True: this call charges),
        else the one recorded first (False). Raises ProcessorUnavailable when the ledger cannot be reached."""
        ...


_RECORD = """
INSERT INTO simulated_processor_answers (reference, approved, decline_reason) VALUES ($1, $2, $3)
ON CONFLICT (reference) DO NOTHING
RETURNING approved, decline_reason
"""
_RECORDED = "SELECT approved, decline_reason FROM simulated_processor_answers WHERE reference = $1"


class PgProcessorLedger:
    """`ProcessorLedger` on payment's PostgreSQL database (table `simulated_processor_answers`).

    One statement decides: of two instances inserting the same reference at once, the second
    waits for the first to commit and inserts nothing; it then reads the first one's answer.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def first_answer(self, reference: str, answer: ProcessorResponse) -> tuple[ProcessorResponse, bool]:
        try:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(_RECORD, reference, answer.approved, answer.decline_reason)
                if row is not None:
                    return answer, True
                row = await conn.fetchrow(_RECORDED, reference)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
            raise ProcessorUnavailable(f"the processor's ledger is unavailable: {type(error).__name__}") from error
        if row is None:  # recorded, then gone: nothing deletes these rows, so this is a fault
            raise ProcessorUnavailable(f"the processor lost its answer for {reference}")
        return ProcessorResponse(row["approved"], row["decline_reason"]), False


class SimulatedCardProcessor:
    """The `CardProcessor` port; `charges` counts money actually taken per remembered reference (tests read it).

    `ledger`: where the answers are recorded for every instance (see the module doc); None keeps
    them in this process only. `use_ledger` sets it once the database pool exists.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
        ledger: ProcessorLedger | None = None,
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within 0..1")
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        self._answers: OrderedDict[str, ProcessorResponse] = OrderedDict()
        self.charges: Counter[str] = Counter()
        self.ledger = ledger

    def use_ledger(self, ledger: ProcessorLedger) -> None:
        self.ledger = ledger

    def _delay_s(self) -> float:
        jitter = self._rng.uniform(0.0, self.jitter_ms) if self.jitter_ms > 0 else 0.0
        return (self.latency_ms + jitter) / 1000.0

    async def authorize(self, reference: str, card: Card, amount: Money) -> ProcessorResponse:
        delay = self._delay_s()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.failure_rate > 0 and self._rng.random() < self.failure_rate:
            PROCESSOR_CALLS.labels("injected_failure").inc()
            payment_metrics.count_processor_failure()
            raise ProcessorUnavailable("injected processor failure")
        # Check and record are one step for this loop (the ledger, if any, decides between processes).
        if (answer := self._answers.get(reference)) is not None:
            self._answers.move_to_end(reference)
            PROCESSOR_CALLS.labels("repeat").inc()
            return answer
        decision = decide(card, amount)
        if decision.kind is DecisionKind.PROCESSOR_ERROR:
            PROCESSOR_CALLS.labels("processor_error").inc()
            payment_metrics.count_processor_failure()
            raise ProcessorUnavailable("processor error")
        answer = ProcessorResponse(decision.kind is DecisionKind.APPROVED, decision.decline_reason)
        first = True
        if self.ledger is not None:
            # Another instance may have answered this reference already (or be answering it now):
            # the answer recorded first is the one given, and only its recorder charges.
            answer, first = await self.ledger.first_answer(reference, answer)
        if first and answer.approved:
            self.charges[reference] += 1
        self._answers[reference] = answer
        if len(self._answers) > _REMEMBERED_ANSWERS:
            forgotten, _ = self._answers.popitem(last=False)
            self.charges.pop(forgotten, None)
        if not first:
            PROCESSOR_CALLS.labels("repeat").inc()
        else:
            PROCESSOR_CALLS.labels("approved" if answer.approved else "declined").inc()
        return answer
