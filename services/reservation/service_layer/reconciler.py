"""The reconciler: settles reservations left PENDING by a crash or a slow or absent payment.

Run every second or so (an entry point loops over `reconcile_pending`). For each reservation
PENDING for longer than the window it asks payment what became of its payment, and settles it
by that outcome: approved -> CONFIRMED; declined -> FAILED and seats released; no payment yet
-> left PENDING (the authorization may still be in progress at payment, or the customer may
retry with the same request id) until `pending_window_s` after the claim, then FAILED
(PAYMENT_NOT_COMPLETED) and seats released; payment unavailable -> left for the next round.
A payment that is merely slow therefore never costs the customer the seat. The first-look
window must exceed the payment deadline, so that the reconciler does not race an answer that
is about to arrive; create_reservation sends no authorization late enough to still be in
progress when the pending window ends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from services.kit.errors import InvalidArgument
from services.reservation.domain.reservation import PAYMENT_NOT_COMPLETED, Reservation, ReservationState
from services.reservation.service_layer.booking import settle_and_tell
from services.reservation.service_layer.commands import ReconcilePending
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.ports import PaymentResult, PaymentUnavailable

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """Reservation ids by what one round did to them."""

    confirmed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left_pending: list[str] = field(default_factory=list)  # payment unavailable: next round
    awaiting_payment: list[str] = field(default_factory=list)  # no outcome at payment yet, still in the window
    already_settled: list[str] = field(default_factory=list)  # settled by someone else meanwhile
    voided: list[str] = field(default_factory=list)  # ended meanwhile; its late approval is to be refunded
    # Nothing was due: the first moment a PENDING reservation can be (its claim plus the window;
    # a whole window from now when none is pending). None: something was due, look again soon.
    next_due_in_s: float | None = None


async def reconcile_pending(cmd: ReconcilePending, deps: BookingDependencies) -> ReconcileReport:
    if cmd.older_than.total_seconds() <= deps.payment_deadline_s:
        # A shorter window would fail reservations whose authorization is still in flight.
        raise InvalidArgument.for_field("older_than", "the window must be longer than the payment deadline")
    cutoff = deps.clock.now() - cmd.older_than
    report = ReconcileReport()
    async with deps.uow() as uow:
        pending_ids = [r.id for r in await uow.reservations.list_pending_older_than(cutoff, cmd.limit)]
        if not pending_ids:
            # An idle reconciler need not look every second: the oldest PENDING reservation
            # (or one claimed after this moment) is not due before this.
            now = deps.clock.now()
            oldest = await uow.reservations.list_pending_older_than(now, 1)
            due_at = oldest[0].created_at + cmd.older_than if oldest else now + cmd.older_than
            report.next_due_in_s = max(0.0, (due_at - now).total_seconds())
    for index, reservation_id in enumerate(pending_ids):
        try:
            async with asyncio.timeout(deps.payment_deadline_s + deps.payment_grace_s):
                result = await deps.payments.find_by_reservation(reservation_id, deps.payment_deadline_s)
        except (PaymentUnavailable, TimeoutError):
            # Payment is down: asking about the others now would only wait out more deadlines.
            report.left_pending.extend(pending_ids[index:])
            log.info("payment unavailable; %d reservations left PENDING", len(pending_ids) - index)
            break
        settled = await _settle_or_fail(reservation_id, result, deps)
        if settled is None:
            report.awaiting_payment.append(reservation_id)
        else:
            _record(report, reservation_id, settled)
    return report


async def _settle_or_fail(
    reservation_id: str, result: PaymentResult | None, deps: BookingDependencies
) -> tuple[Reservation, bool] | None:
    """Apply payment's answer; None means payment has recorded none (yet).

    Returns (reservation, changed), or None when it was left to wait for an outcome.
    """
    if result is not None:
        return await settle_and_tell(reservation_id, result, deps)
    async with deps.uow() as uow:
        reservation = await uow.reservations.get(reservation_id, lock=True)
        assert reservation is not None  # reservations are never deleted
        if reservation.state is not ReservationState.PENDING:
            return reservation, False
        now = deps.clock.now()
        if now - reservation.created_at < timedelta(seconds=deps.pending_window_s):
            # Payment may still finish an authorization sent for it, or the customer retry
            # with the same request id: a slow payment must not cost the seat.
            return None
        reservation.fail(PAYMENT_NOT_COMPLETED, now)
        await uow.claims.release(reservation.id)
        await uow.commit()
        return reservation, True


def _record(report: ReconcileReport, reservation_id: str, settled: tuple[Reservation, bool]) -> None:
    reservation, changed = settled
    if not changed:
        report.already_settled.append(reservation_id)
    elif reservation.state is ReservationState.CONFIRMED:
        report.confirmed.append(reservation_id)
    elif reservation.state is ReservationState.CANCELLED:
        report.voided.append(reservation_id)
    else:
        report.failed.append(reservation_id)
