"""Ports of the notification use cases: the delivery log and the mail sender."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.notification.domain.model import DeliveryState, Draft, ReservationFacts


@dataclass(frozen=True)
class Notification:
    """A row of the delivery log, as the API shows it."""

    id: str
    event_id: str
    event_type: str
    customer_id: str
    recipient: str
    subject: str
    body: str
    reservation_id: str
    state: DeliveryState
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """A delivery this replica may attempt now, under `token`, until its lease runs out."""

    id: str
    event_id: str
    recipient: str
    subject: str
    body: str
    attempts: int  # including this one
    token: str


@dataclass(frozen=True)
class NotificationPage:
    notifications: Sequence[Notification]
    next_page_token: str = ""


class DeliveryLog(Protocol):
    """The notification store: one row per event id (the key that makes delivery happen once)."""

    async def record(self, draft: Draft) -> bool:
        """Insert the draft; False when a row for its event id already exists (nothing changes)."""

    async def known_facts(self, reservation_id: str) -> ReservationFacts | None:
        """Movie, time and seats of the reservation from an earlier message, if any."""

    async def claim_due(self, limit: int, lease_s: float) -> Sequence[Claim]:
        """Take up to `limit` due PENDING/RETRYING rows nobody holds, counting one attempt each."""

    async def begin_handover(self, claim: Claim) -> bool:
        """Note that the message is about to be handed over (SMTP DATA); False if the claim was lost."""

    async def mark_sent(self, claim: Claim) -> None: ...

    async def mark_failed(self, claim: Claim, error: str, retry_in_s: float | None) -> None:
        """Definitely not delivered: RETRYING after `retry_in_s`, or PARKED when it is None."""

    async def settle_in_doubt(self, retry: bool) -> int:
        """Rows whose lease ran out during a handover: PARKED (or, with `retry`, due again)."""

    async def list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> NotificationPage: ...

    async def get(self, notification_id: str) -> Notification | None: ...


@dataclass(frozen=True)
class OutgoingMail:
    message_id: str
    recipient: str
    subject: str
    body: str


class NotDelivered(Exception):  # an outcome, not a bug
    """The mail server certainly did not take the message (refused, unreachable before DATA)."""

    def __init__(self, error: str, permanent: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.permanent = permanent


class DeliveryInDoubt(Exception):
    """The connection broke or timed out after the message was handed over, before the reply."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ClaimLost(Exception):
    """The lease ran out before the handover: another replica owns the delivery now."""


class MailSender(Protocol):
    async def send(self, mail: OutgoingMail, before_handover: Callable[[], Awaitable[bool]]) -> None:
        """Deliver `mail`; call `before_handover` right before DATA and abort if it says False.

        Raises NotDelivered, DeliveryInDoubt or ClaimLost; returns when the server accepted it.
        """
