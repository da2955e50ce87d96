"""The Payment aggregate: the one payment of one reservation, and whether it was refunded.

    approve() -> APPROVED --refund()--> REFUNDED
    decline() -> DECLINED               (nothing taken, nothing to refund)

It keeps the card's brand and last four digits, never the number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from services.kit.actor import Actor
from services.kit.errors import InvalidArgument
from services.payment.domain.card import Card
from services.payment.domain.events import DomainEvent, PaymentAuthorized, PaymentDeclined, PaymentRefunded
from services.payment.domain.values import Money


class PaymentState(enum.StrEnum):
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


class RefundOutcome(enum.StrEnum):
    REFUNDED = "REFUNDED"  # given back now
    ALREADY_REFUNDED = "ALREADY_REFUNDED"  # a repeat: nothing done
    NOT_CHARGED = "NOT_CHARGED"  # the payment was declined: nothing to give back
    NO_PAYMENT = "NO_PAYMENT"  # the reservation has no payment (yet): nothing done


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument.for_field("at", "must be a timezone-aware time")
    return value


@dataclass(eq=False)  # identity: the unit of work tracks aggregates in a set
class Payment:
    id: str
    reservation_id: str
    customer_id: str
    amount: Money
    card_last4: str
    card_brand: str
    state: PaymentState
    created_at: datetime
    customer_email: str = ""
    decline_reason: str | None = None
    refunded_at: datetime | None = None
    version: int = 1
    events: list[DomainEvent] = field(default_factory=list, repr=False)

    @classmethod
    def approve(
        cls,
        *,
        payment_id: str,
        reservation_id: str,
        customer_id: str,
        customer_email: str,
        amount: Money,
        card: Card,
        at: datetime,
    ) -> Payment:
        payment = cls(
            id=payment_id,
            reservation_id=reservation_id,
            customer_id=customer_id,
            customer_email=customer_email,
            amount=amount,
            card_last4=card.last4,
            card_brand=card.brand.value,
            state=PaymentState.APPROVED,
            created_at=_require_aware(at),
        )
        payment.events.append(PaymentAuthorized(payment_id, reservation_id, customer_id, amount, card.last4, at))
        return payment

    @classmethod
    def decline(
        cls,
        *,
        payment_id: str,
        reservation_id: str,
        customer_id: str,
        customer_email: str,
        amount: Money,
        card: Card,
        reason: str,
        at: datetime,
    ) -> Payment:
        payment = cls(
            id=payment_id,
            reservation_id=reservation_id,
            customer_id=customer_id,
            customer_email=customer_email,
            amount=amount,
            card_last4=card.last4,
            card_brand=card.brand.value,
            state=PaymentState.DECLINED,
            created_at=_require_aware(at),
            decline_reason=reason,
        )
        payment.events.append(PaymentDeclined(payment_id, reservation_id, customer_id, amount, reason, at))
        return payment

    def refund(self, at: datetime, customer_email: str = "", cancelled_by: Actor | None = None) -> RefundOutcome:
        """Give the money back, once. A repeat, or a declined payment, changes nothing.

        `cancelled_by` is who cancelled the reservation (the refund follows by rule); the
        event passes it on so the refund notice can be worded for them.
        """
        if self.state is PaymentState.REFUNDED:
            return RefundOutcome.ALREADY_REFUNDED
        if self.state is PaymentState.DECLINED:
            return RefundOutcome.NOT_CHARGED
        self.state = PaymentState.REFUNDED
        self.refunded_at = _require_aware(at)
        self.version += 1
        self.events.append(
            PaymentRefunded(
                payment_id=self.id,
                reservation_id=self.reservation_id,
                customer_id=self.customer_id,
                customer_email=self.customer_email or customer_email,
                amount=self.amount,
                occurred_at=at,
                cancelled_by=cancelled_by,
            )
        )
        return RefundOutcome.REFUNDED
