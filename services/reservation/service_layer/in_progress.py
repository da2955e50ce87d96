"""The authorizations a reservation process runs in the background, one per PENDING reservation.

create_reservation starts one when it has claimed the seats; it runs in its own task so that
it survives the call that started it (the caller's deadline may pass, or it may be answered
UNAVAILABLE first), and settles the reservation by payment's answer whenever it comes. A retry
of the same request in this process joins it instead of sending a second authorization.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from services.kit.errors import DomainError
from services.reservation.domain.reservation import Reservation

log = logging.getLogger(__name__)


class PaymentsInProgress:
    """The authorizations this process runs, at most one per reservation; `close()` at shutdown
    (the reconciler settles what was cut off)."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Reservation]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self, reservation_id: str, pay: Callable[[], Coroutine[Any, Any, Reservation]]
    ) -> asyncio.Task[Reservation]:
        task = self._tasks.get(reservation_id)
        if task is None:
            task = asyncio.create_task(pay(), name=f"pay {reservation_id}")
            self._tasks[reservation_id] = task
            task.add_done_callback(lambda done: self._finished(reservation_id, done))
        return task

    def _finished(self, reservation_id: str, task: asyncio.Task[Reservation]) -> None:
        if self._tasks.get(reservation_id) is task:
            del self._tasks[reservation_id]
        if not task.cancelled() and (error := task.exception()) is not None and not isinstance(error, DomainError):
            # A domain error reached (or was meant for) the caller; anything else is a fault
            # that nobody may be waiting to hear about.
            log.error("settling a payment failed", exc_info=error, extra={"reservation_id": reservation_id})

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
