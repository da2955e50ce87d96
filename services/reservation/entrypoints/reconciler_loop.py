"""The reconciler's loop: one round of service_layer.reconciler every interval while something is
due, until stopped. When a round finds nothing due it sleeps until the oldest PENDING reservation
can be (at most the reconciler's window, at least the interval), so an idle service does not
query its store every second.

Every replica of the service runs it; the row locks of `settle` make two replicas settling one
reservation harmless (the second finds it settled).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from services.kit.aio import wait_event
from services.reservation.service_layer.commands import ReconcilePending
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.reconciler import ReconcileReport, reconcile_pending

log = logging.getLogger(__name__)


class ReconcilerLoop:
    def __init__(self, deps: BookingDependencies, interval_s: float, window_s: float, batch: int = 100) -> None:
        self._deps = deps
        self._interval_s = interval_s
        self._window_s = window_s
        self._command = ReconcilePending(older_than=timedelta(seconds=window_s), limit=batch)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> ReconcileReport:
        report = await reconcile_pending(self._command, self._deps)
        if report.confirmed or report.failed or report.voided:
            log.info(
                "reconciler settled reservations",
                extra={
                    "confirmed": report.confirmed,
                    "failed": report.failed,
                    "voided": report.voided,
                    # still inside the pending window with no outcome at payment yet
                    "awaiting_payment": len(report.awaiting_payment),
                },
            )
        return report

    def pause_after(self, report: ReconcileReport | None) -> float:
        """Seconds until the next round: the interval, or longer when nothing is due before."""
        if report is None or report.next_due_in_s is None:
            return self._interval_s
        return min(max(report.next_due_in_s, self._interval_s), max(self._window_s, self._interval_s))

    async def run(self) -> None:
        while not self._stopping.is_set():
            report = None
            try:
                report = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store or payment misbehaved this round; the next round tries again.
                log.exception("reconciler round failed")
            await wait_event(self._stopping, self.pause_after(report))
