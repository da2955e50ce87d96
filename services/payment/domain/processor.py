"""The simulated card processor's decision: a pure function of the card (and amount).

Documented test cards (numbers as Stripe's test mode uses them, all Luhn-valid):

| number              | outcome                                               |
|---------------------|-------------------------------------------------------|
| 4242 4242 4242 4242 | approved                                              |
| 4000 0000 0000 9995 | declined, reason `insufficient_funds`                 |
| 4000 0000 0000 0002 | declined, reason `card_declined`                      |
| 4000 0000 0000 0119 | processor error (payment answers UNAVAILABLE, nothing stored) |
| any other valid card| approved                                              |

Latency and failure injection are settings of the processor adapter, not of this decision.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.payment.domain.card import Card
from services.payment.domain.values import Money

CARD_APPROVED = "4242424242424242"
CARD_INSUFFICIENT_FUNDS = "4000000000009995"
CARD_DECLINED = "4000000000000002"
CARD_PROCESSOR_ERROR = "4000000000000119"

INSUFFICIENT_FUNDS = "insufficient_funds"
GENERIC_DECLINE = "card_declined"


class DecisionKind(enum.StrEnum):
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    PROCESSOR_ERROR = "PROCESSOR_ERROR"


@dataclass(frozen=True)
class ProcessorDecision:
    kind: DecisionKind
    decline_reason: str | None = None


_DECISIONS = {
    CARD_INSUFFICIENT_FUNDS: ProcessorDecision(DecisionKind.DECLINED, INSUFFICIENT_FUNDS),
    CARD_DECLINED: ProcessorDecision(DecisionKind.DECLINED, GENERIC_DECLINE),
    CARD_PROCESSOR_ERROR: ProcessorDecision(DecisionKind.PROCESSOR_ERROR),
}


def decide(card: Card, amount: Money) -> ProcessorDecision:
    """What the simulated processor answers for this card (the amount does not matter yet)."""
    return _DECISIONS.get(card.reveal_number(), ProcessorDecision(DecisionKind.APPROVED))
