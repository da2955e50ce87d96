"""The reconciler: settles reservations left PENDING by a crash or a payment timeout.

Run every few seconds (an entry point loops over `reconcile_pending`). For each reservation
PENDING for longer than the window it asks payment what became of its payment:
approved -> CONFIRMED; declined, or no payment at all -> FAILED and seats released; payment
still unavailable -> left for the next round. The window must exceed the payment deadline,
so that an authorization still in flight is not judged "never happened".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

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
    already_settled: list[str] = field(default_factory=list)  # settled by someone else meanwhile
    voided: list[str] = field(default_factory=list)  # ended meanwhile; its late approval is to be refunded


async def reconcile_pending(cmd: ReconcilePending, deps: BookingDependencies) -> ReconcileReport:
    if cmd.older_than.total_seconds() <= deps.payment_deadline_s:
        # A shorter window would fail reservations whose authorization is still in flight.
        raise InvalidArgument.for_field("older_than", "the window must be longer than the payment deadline")
    cutoff = deps.clock.now() - cmd.older_than
    async with deps.uow() as uow:
        pending_ids = [r.id for r in await uow.reservations.list_pending_older_than(cutoff, cmd.limit)]
    report = ReconcileReport()
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
        _record(report, reservation_id, settled)
    return report


async def _settle_or_fail(
    reservation_id: str, result: PaymentResult | None, deps: BookingDependencies
) -> tuple[Reservation, bool]:
    """Apply payment's answer; None means payment never recorded one. Returns (reservation, changed)."""
    if result is not None:
        return await settle_and_tell(reservation_id, result, deps)
    async with deps.uow() as uow:
        reservation = await uow.reservations.get(reservation_id, lock=True)
        assert reservation is not None  # reservations are never deleted
        if reservation.state is not ReservationState.PENDING:
            return reservation, False
        reservation.fail(PAYMENT_NOT_COMPLETED, deps.clock.now())
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
