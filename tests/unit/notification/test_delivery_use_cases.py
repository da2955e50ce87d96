"""Delivery use cases on fakes: record once, send, retry with backoff, park, in-doubt, lost claims."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from services.kit.errors import NotFound
from services.notification.domain.model import (
    DeliveryState,
    EventFacts,
    EventKind,
    InDoubtPolicy,
    Money,
    ReservationFacts,
    RetryPolicy,
)
from services.notification.service_layer.notifications import (
    NotificationDependencies,
    deliver,
    get_notification,
    record_notification,
)
from services.notification.service_layer.ports import DeliveryInDoubt, NotDelivered

from .fakes import FakeDeliveryLog, FakeSender


def deps(
    log: FakeDeliveryLog, sender: FakeSender, in_doubt: InDoubtPolicy = InDoubtPolicy.PARK
) -> NotificationDependencies:
    return NotificationDependencies(
        log=log,
        sender=sender,
        retry=RetryPolicy(max_attempts=3, base_s=1, max_s=10),
        in_doubt=in_doubt,
        zone=ZoneInfo("UTC"),
        message_id_domain="test.local",
        lease_s=30,
    )


def event(event_id: str = "e-1", kind: EventKind = EventKind.RESERVATION_CONFIRMED, **more: object) -> EventFacts:
    values: dict[str, object] = {
        "event_id": event_id,
        "event_type": "t",
        "kind": kind,
        "reservation_id": "r-1",
        "customer_id": "customer-1",
        "customer_email": "ada@example.com",
        "reservation": ReservationFacts(movie_title="Metropolis", seats=("A1",)),
        "amount": Money(2400, "EUR"),
    }
    values.update(more)
    return EventFacts(**values)  # type: ignore[arg-type]


async def test_an_event_is_recorded_once_and_sent_once_with_a_stable_message_id() -> None:
    log, sender = FakeDeliveryLog(), FakeSender()
    d = deps(log, sender)
    assert await record_notification(event(), d)
    assert not await record_notification(event(), d)  # redelivered
    [claim] = await log.claim_due(10, 30)
    assert await deliver(claim, d) == "sent"
    assert [m.message_id for m in sender.sent] == ["<e-1@test.local>"]
    assert log.rows["e-1"].notification.state is DeliveryState.SENT
    assert await log.claim_due(10, 30) == []


async def test_failures_are_retried_with_backoff_then_parked_with_the_error() -> None:
    log = FakeDeliveryLog()
    sender = FakeSender(fail_with=NotDelivered("SMTP 550: no such user", permanent=True))
    d = deps(log, sender)
    await record_notification(event(), d)
    outcomes, delays = [], []
    for _ in range(3):
        [claim] = await log.claim_due(10, 30)
        outcomes.append(await deliver(claim, d))
        delays.append(log.rows["e-1"].retry_in_s)
    assert outcomes == ["retrying", "retrying", "parked"]
    assert delays == [1.0, 2.0, None]
    row = log.rows["e-1"].notification
    assert (row.state, row.attempts) == (DeliveryState.PARKED, 3)
    assert row.last_error == "SMTP 550: no such user (after 3 attempts)"


@pytest.mark.parametrize(("policy", "state"), [(InDoubtPolicy.PARK, "PARKED"), (InDoubtPolicy.RESEND, "RETRYING")])
async def test_a_broken_line_during_data_is_in_doubt(policy: InDoubtPolicy, state: str) -> None:
    log, sender = FakeDeliveryLog(), FakeSender(fail_with=DeliveryInDoubt("reset"))
    d = deps(log, sender, policy)
    await record_notification(event(), d)
    [claim] = await log.claim_due(10, 30)
    assert await deliver(claim, d) == "in_doubt"
    row = log.rows["e-1"].notification
    assert row.state.value == state and row.last_error.startswith("IN_DOUBT")


async def test_a_lost_claim_sends_nothing_and_changes_nothing() -> None:
    log, sender = FakeDeliveryLog(), FakeSender(lose_claim=True)
    d = deps(log, sender)
    await record_notification(event(), d)
    [claim] = await log.claim_due(10, 30)
    assert await deliver(claim, d) == "lost"
    assert sender.sent == [] and log.rows["e-1"].notification.state is DeliveryState.PENDING


async def test_a_refund_notice_borrows_the_facts_of_the_reservation() -> None:
    log, sender = FakeDeliveryLog(), FakeSender()
    d = deps(log, sender)
    await record_notification(event("e-1"), d)
    await record_notification(event("e-2", EventKind.PAYMENT_REFUNDED, reservation=ReservationFacts()), d)
    assert "Metropolis" in log.rows["e-2"].notification.body


async def test_someone_elses_notification_is_not_found() -> None:
    log, sender = FakeDeliveryLog(), FakeSender()
    d = deps(log, sender)
    await record_notification(event(), d)
    mine = log.rows["e-1"].notification
    assert (await get_notification("customer-1", mine.id, d)).id == mine.id
    with pytest.raises(NotFound):
        await get_notification("customer-2", mine.id, d)
