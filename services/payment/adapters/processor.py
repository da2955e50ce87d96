"""The simulated card processor: the domain's test-card decision, after a configurable latency,
with configurable injected failures (the chaos suite turns these up through settings).

Idempotent per reference (the reservation id), like a real processor's idempotency key: a repeat
returns the first answer and never charges twice. It waits with `asyncio.sleep`, so a slow
processor never blocks the event loop, and a caller whose deadline passes cancels the wait
before anything is charged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, OrderedDict

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


class SimulatedCardProcessor:
    """The `CardProcessor` port; `charges` counts money actually taken per remembered reference (tests read it)."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within 0..1")
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        self._answers: OrderedDict[str, ProcessorResponse] = OrderedDict()
        self.charges: Counter[str] = Counter()

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
        # From here to the end there is no await: check and record are one step for this loop.
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
        if answer.approved:
            self.charges[reference] += 1
        self._answers[reference] = answer
        if len(self._answers) > _REMEMBERED_ANSWERS:
            forgotten, _ = self._answers.popitem(last=False)
            self.charges.pop(forgotten, None)
        PROCESSOR_CALLS.labels("approved" if answer.approved else "declined").inc()
        return answer
