"""The authorizations a reservation process runs in the background, one per PENDING reservation.

create_reservation starts one when it has claimed the seats; it runs in its own task so that
it survives the call that started it (the caller's deadline may pass, or it may be answered
UNAVAILABLE first), and settles the reservation by payment's answer whenever it comes. It keeps
asking through a payment outage (with a capped backoff) until the last moment an authorization
may be sent, so a reservation process that stays up settles its reservations by itself once
payment is back, even if the customer walked away.

A retry of the same request in this process joins it instead of sending a second
authorization. What the waiting callers learn besides the outcome is in `Attempts`: an attempt
that found payment unreachable tells them at once (they answer UNAVAILABLE with a retry hint
rather than wait out their time), and a caller that joins while the task waits between two
attempts cuts that pause short (its retry is the moment to ask again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from services.kit.errors import DomainError
from services.reservation.domain.reservation import Reservation

log = logging.getLogger(__name__)


class Attempts:
    """Between one background authorization and the callers waiting for it."""

    def __init__(self) -> None:
        self._unreachable: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._pausing = False

    def unreachable(self) -> asyncio.Future[None]:
        """Done when the next attempt to end finds payment unreachable (the outcome is still to come)."""
        if self._unreachable is None or self._unreachable.done():
            self._unreachable = asyncio.get_running_loop().create_future()
        return self._unreachable

    def found_unreachable(self) -> None:
        waiting, self._unreachable = self._unreachable, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def wake(self) -> None:
        """A caller joined: if the task is pausing between attempts, ask again now."""
        if self._pausing:
            self._wake.set()

    async def pause(self, seconds: float) -> None:
        self._wake.clear()
        self._pausing = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        finally:
            self._pausing = False


@dataclass
class Authorization:
    """One reservation's background authorization: its task and what it tells waiting callers."""

    task: asyncio.Task[Reservation]
    attempts: Attempts = field(default_factory=Attempts)


class PaymentsInProgress:
    """The authorizations this process runs, at most one per reservation; `close()` at shutdown
    (the reconciler settles what was cut off)."""

    def __init__(self) -> None:
        self._running: dict[str, Authorization] = {}

    def __len__(self) -> int:
        return len(self._running)

    def start(
        self, reservation_id: str, pay: Callable[[Attempts], Coroutine[Any, Any, Reservation]]
    ) -> tuple[Authorization, bool]:
        """The authorization in progress for the reservation, or a new one running `pay`;
        and whether it was joined (True) rather than started."""
        running = self._running.get(reservation_id)
        if running is not None:
            return running, True
        attempts = Attempts()
        task = asyncio.create_task(pay(attempts), name=f"pay {reservation_id}")
        running = Authorization(task, attempts)
        self._running[reservation_id] = running
        task.add_done_callback(lambda done: self._finished(reservation_id, done))
        return running, False

    def _finished(self, reservation_id: str, task: asyncio.Task[Reservation]) -> None:
        running = self._running.get(reservation_id)
        if running is not None and running.task is task:
            del self._running[reservation_id]
        if not task.cancelled() and (error := task.exception()) is not None and not isinstance(error, DomainError):
            # A domain error reached (or was meant for) the caller; anything else is a fault
            # that nobody may be waiting to hear about.
            log.error("settling a payment failed", exc_info=error, extra={"reservation_id": reservation_id})

    async def close(self) -> None:
        tasks = [running.task for running in self._running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
