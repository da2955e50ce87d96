"""Domain events of the Payment aggregate; the unit of work writes them to the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.actor import Actor
from services.payment.domain.values import Money


@dataclass(frozen=True)
class PaymentAuthorized:
    payment_id: str
    reservation_id: str
    customer_id: str
    amount: Money
    card_last4: str
    occurred_at: datetime


@dataclass(frozen=True)
class PaymentDeclined:
    payment_id: str
    reservation_id: str
    customer_id: str
    amount: Money
    decline_reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class PaymentRefunded:
    """An approved payment was given back because its reservation no longer stands."""

    payment_id: str
    reservation_id: str
    customer_id: str
    customer_email: str
    amount: Money
    occurred_at: datetime
    cancelled_by: Actor | None = None  # who cancelled the reservation; None when not known


DomainEvent = PaymentAuthorized | PaymentDeclined | PaymentRefunded
