"""Use cases: record the notification an event calls for, deliver it, read a customer's own.

Exactly once in effect, in three steps (record intent, send, mark sent):

1. `record_notification` inserts one row per event id (PENDING) in one statement; a
   redelivered or republished event finds the row and does nothing. The event is acked once
   the row exists, so a mail server outage never holds up the stream.
2. `deliver` runs for a row claimed with a lease (`DeliveryLog.claim_due`, which counts the
   attempt). Right before SMTP DATA it records the handover (`begin_handover`), checking the
   claim is still ours; then DATA; then SENT. Every failure before DATA, and every definite
   refusal, is retried with backoff and parked after `max_attempts`.
3. A row whose lease ran out *during* a handover is in doubt: the process died (or the line
   broke) after the server may have taken the message and before SENT was written. It is
   never resent blindly: by default it is PARKED with IN_DOUBT (`InDoubtPolicy.PARK`), so a
   crash can cost one message but never double one. With `RESEND` it is sent again with the
   same Message-ID (derived from the event id), which receivers that deduplicate drop.

The remaining window, with PARK: a crash between the server's "250 accepted" and the SENT
update leaves a delivered message marked PARKED/IN_DOUBT (the customer got it once; the log
is pessimistic); a crash between DATA and "250" may lose that one message (parked, visible,
re-queueable). Neither sends twice. A replica stalled for longer than the lease between
`begin_handover` and DATA is the same case: the other replicas see the handover and park it
instead of sending. Before the handover, a lost lease is detected and the stalled replica
backs off (ClaimLost), so a claim that moved on is never used to send.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from prometheus_client import Counter

from services.kit.errors import InvalidArgument, NotFound
from services.notification.domain.model import (
    IN_DOUBT,
    NO_RECIPIENT,
    EventFacts,
    EventKind,
    InDoubtPolicy,
    RetryPolicy,
    Skip,
    message_id,
)
from services.notification.domain.templates import draft
from services.notification.service_layer.ports import (
    Claim,
    ClaimLost,
    DeliveryInDoubt,
    DeliveryLog,
    MailSender,
    NotDelivered,
    Notification,
    NotificationPage,
    OutgoingMail,
)

log = logging.getLogger("services.notification")

DELIVERIES = Counter("cinema_notifications_delivery_total", "Delivery attempts by outcome", ["outcome"])
RECORDED = Counter("cinema_notifications_recorded_total", "Notifications recorded by kind", ["kind"])
NO_RECIPIENT_PARKED = Counter(
    "cinema_notifications_no_recipient_total",
    "Notifications recorded PARKED because the event named no usable e-mail address, by kind",
    ["kind"],
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class NotificationDependencies:
    log: DeliveryLog
    sender: MailSender
    retry: RetryPolicy
    in_doubt: InDoubtPolicy
    zone: ZoneInfo
    message_id_domain: str
    lease_s: float
    mark_sent_patience_s: float = 10.0


async def record_notification(facts: EventFacts, deps: NotificationDependencies) -> bool:
    """Record the message `facts` call for; True when a new row was written (deliver it)."""
    known = None
    if facts.kind is EventKind.PAYMENT_REFUNDED and not facts.reservation.known:
        known = await deps.log.known_facts(facts.reservation_id)
    decided = draft(facts, deps.zone, known)
    if isinstance(decided, Skip):
        log.info("no notification for %s: %s", facts.event_id, decided.reason)
        return False
    inserted = await deps.log.record(decided)
    if inserted:
        RECORDED.labels(decided.message_kind.value).inc()
        if decided.error.startswith(NO_RECIPIENT):
            # Not an outage (nothing to retry) but nobody is told: counted and said, never silent.
            NO_RECIPIENT_PARKED.labels(decided.message_kind.value).inc()
            log.info(
                "notification parked, nobody to send it to: %s",
                decided.error,
                extra={
                    "event_id": facts.event_id,
                    "reservation_id": facts.reservation_id,
                    "customer_id": facts.customer_id,
                    "kind": decided.message_kind.value,
                    "reason": "NO_RECIPIENT",
                },
            )
    return inserted


async def deliver(claim: Claim, deps: NotificationDependencies) -> str:
    """Attempt one claimed delivery; returns the outcome (sent, retrying, parked, in_doubt, lost)."""
    mail = OutgoingMail(
        message_id=message_id(claim.event_id, deps.message_id_domain),
        recipient=claim.recipient,
        subject=claim.subject,
        body=claim.body,
    )

    async def before_handover() -> bool:
        return await deps.log.begin_handover(claim)

    try:
        await deps.sender.send(mail, before_handover)
    except ClaimLost:
        outcome = "lost"
    except DeliveryInDoubt as doubt:
        # Only the line broke, not the process: the same conservative choice as after a crash.
        if deps.in_doubt is InDoubtPolicy.RESEND:
            await deps.log.mark_failed(claim, f"{IN_DOUBT}: {doubt.error}", deps.retry.delay_after(1).total_seconds())
        else:
            await deps.log.mark_failed(claim, f"{IN_DOUBT}: {doubt.error}", None)
        outcome = "in_doubt"
    except NotDelivered as failure:
        if deps.retry.gives_up_after(claim.attempts):
            await deps.log.mark_failed(claim, f"{failure.error} (after {claim.attempts} attempts)", None)
            outcome = "parked"
        else:
            delay = deps.retry.delay_after(claim.attempts).total_seconds()
            await deps.log.mark_failed(claim, failure.error, delay)
            outcome = "retrying"
        log.warning("notification %s not delivered (attempt %d): %s", claim.id, claim.attempts, failure.error)
    else:
        await _mark_sent_patiently(claim, deps)
        outcome = "sent"
    DELIVERIES.labels(outcome).inc()
    return outcome


async def _mark_sent_patiently(claim: Claim, deps: NotificationDependencies) -> None:
    """The mail is out: keep trying to say so through a short store outage (well within the
    lease), since a row left in its handover state is parked as in doubt later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(deps.mark_sent_patience_s, deps.lease_s / 2)
    while True:
        try:
            await deps.log.mark_sent(claim)
            return
        except Exception as error:
            if loop.time() > deadline:
                raise
            log.warning("could not mark notification %s sent (%s); trying again", claim.id, error)
            await asyncio.sleep(0.5)


async def settle_in_doubt(deps: NotificationDependencies) -> int:
    settled = await deps.log.settle_in_doubt(retry=deps.in_doubt is InDoubtPolicy.RESEND)
    if settled:
        log.warning("%d notification(s) were in doubt after a handover; policy %s", settled, deps.in_doubt.value)
    return settled


async def list_notifications(
    customer_id: str, page_size: int, page_token: str, deps: NotificationDependencies
) -> NotificationPage:
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument.for_field("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return await deps.log.list_for_customer(customer_id, page_size or DEFAULT_PAGE_SIZE, page_token)


async def get_notification(customer_id: str, notification_id: str, deps: NotificationDependencies) -> Notification:
    """One of the caller's notifications; someone else's is NotFound, so ids cannot be probed."""
    found = await deps.log.get(notification_id)
    if found is None or found.customer_id != customer_id:
        raise NotFound("notification", notification_id)
    return found
