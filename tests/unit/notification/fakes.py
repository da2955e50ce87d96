"""In-memory fakes of the notification ports (unit tests only)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from services.notification.domain.model import DeliveryState, Draft, ReservationFacts
from services.notification.service_layer.ports import (
    Claim,
    ClaimLost,
    DeliveryInDoubt,
    DeliveryLog,
    NotDelivered,
    Notification,
    NotificationPage,
    OutgoingMail,
)


@dataclass
class Row:
    notification: Notification
    facts: ReservationFacts
    token: str = ""
    handover: bool = False
    retry_in_s: float | None = None


class FakeDeliveryLog(DeliveryLog):
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}  # by event id

    def by_id(self, notification_id: str) -> Row:
        return next(r for r in self.rows.values() if r.notification.id == notification_id)

    def _set(self, row: Row, **changes: object) -> None:
        row.notification = replace(row.notification, **changes)  # type: ignore[arg-type]

    async def record(self, draft: Draft) -> bool:
        if draft.event_id in self.rows:
            return False
        self.rows[draft.event_id] = Row(
            Notification(
                id=str(uuid.uuid4()),
                event_id=draft.event_id,
                event_type=draft.event_type,
                customer_id=draft.customer_id,
                recipient=draft.recipient,
                subject=draft.subject,
                body=draft.body,
                reservation_id=draft.reservation_id,
                state=draft.state,
                attempts=0,
                last_error=draft.error,
                created_at=datetime.now(UTC),
                sent_at=None,
            ),
            draft.reservation,
        )
        return True

    async def known_facts(self, reservation_id: str) -> ReservationFacts | None:
        for row in reversed(list(self.rows.values())):
            if row.notification.reservation_id == reservation_id and row.facts.known:
                return row.facts
        return None

    async def claim_due(self, limit: int, lease_s: float) -> Sequence[Claim]:
        claims: list[Claim] = []
        for row in self.rows.values():
            n = row.notification
            if n.state in (DeliveryState.PENDING, DeliveryState.RETRYING) and not row.token and len(claims) < limit:
                row.token = str(uuid.uuid4())
                self._set(row, attempts=n.attempts + 1)
                claims.append(Claim(n.id, n.event_id, n.recipient, n.subject, n.body, n.attempts + 1, row.token))
        return claims

    async def begin_handover(self, claim: Claim) -> bool:
        row = self.by_id(claim.id)
        if row.token != claim.token:
            return False
        row.handover = True
        return True

    async def mark_sent(self, claim: Claim) -> None:
        row = self.by_id(claim.id)
        self._set(row, state=DeliveryState.SENT, sent_at=datetime.now(UTC), last_error="")
        row.token = ""

    async def mark_failed(self, claim: Claim, error: str, retry_in_s: float | None) -> None:
        row = self.by_id(claim.id)
        state = DeliveryState.PARKED if retry_in_s is None else DeliveryState.RETRYING
        self._set(row, state=state, last_error=error)
        row.token, row.handover, row.retry_in_s = "", False, retry_in_s

    async def settle_in_doubt(self, retry: bool) -> int:
        return 0

    async def list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> NotificationPage:
        mine = [r.notification for r in self.rows.values() if r.notification.customer_id == customer_id]
        return NotificationPage(mine[:page_size])

    async def get(self, notification_id: str) -> Notification | None:
        return next((r.notification for r in self.rows.values() if r.notification.id == notification_id), None)


@dataclass
class FakeSender:
    """Delivers to `sent`, or fails as told: `fail_with` an exception (every time) or `lose_claim`."""

    sent: list[OutgoingMail] = field(default_factory=list)
    fail_with: Exception | None = None
    lose_claim: bool = False

    async def send(self, mail: OutgoingMail, before_handover: Callable[[], Awaitable[bool]]) -> None:
        if isinstance(self.fail_with, NotDelivered):
            raise self.fail_with
        if self.lose_claim or not await before_handover():
            raise ClaimLost(mail.message_id)
        if isinstance(self.fail_with, DeliveryInDoubt):
            raise self.fail_with
        self.sent.append(mail)
