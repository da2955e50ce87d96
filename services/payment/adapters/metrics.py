"""Payment's business series: payments by outcome, counted once their outcome is stored.

`cinema_payments_total{outcome}`: `approved`, `declined` and `refunded` when the transaction
that records the payment (or its refund) commits; `failed` when the card processor could not
answer (nothing stored, nothing charged: the caller may retry).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from services.payment.domain.events import PaymentAuthorized, PaymentDeclined, PaymentRefunded

PAYMENTS = Counter("cinema_payments_total", "Payments by outcome", ["outcome"])

_OUTCOMES = ((PaymentAuthorized, "approved"), (PaymentDeclined, "declined"), (PaymentRefunded, "refunded"))

# Every outcome shows (at 0) from the start, so a rate() or an alert has a series to read.
for _, _outcome in (*_OUTCOMES, (None, "failed")):
    PAYMENTS.labels(_outcome)


def count_committed(events: Iterable[object]) -> None:
    """Count the outcomes of a committed transaction's events."""
    for event in events:
        for kind, outcome in _OUTCOMES:
            if isinstance(event, kind):
                PAYMENTS.labels(outcome).inc()


def count_processor_failure() -> None:
    PAYMENTS.labels("failed").inc()
