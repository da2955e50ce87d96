"""The delivery loop, one per replica: claim due notifications, send them, settle doubts.

Woken at once when this replica records a notification, otherwise polling every
`idle_s` (rows recorded by other replicas, retries that fell due, and every `settle_every_s`
the in-doubt rows whose lease ran out mid-handover). Several replicas run it at once: claims
take disjoint rows. A store outage is logged and retried; it never ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from services.kit.aio import wait_event
from services.notification.service_layer.notifications import NotificationDependencies, deliver, settle_in_doubt

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self, deps: NotificationDependencies, *, batch: int = 16, idle_s: float = 1.0, settle_every_s: float = 5.0
    ) -> None:
        self._deps = deps
        self._batch = batch
        self._idle_s = idle_s
        self._settle_every_s = settle_every_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        last_settle = float("-inf")
        while not self._stopping.is_set():
            try:
                if time.monotonic() - last_settle >= self._settle_every_s:
                    last_settle = time.monotonic()
                    await settle_in_doubt(self._deps)
                if await self.deliver_due() == self._batch:
                    continue  # there may be more right away
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("delivery loop: %s; retrying", error)
            await wait_event(self._wake, self._idle_s)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One round: claim a batch and attempt each concurrently; returns how many were claimed."""
        claims = await self._deps.log.claim_due(self._batch, self._deps.lease_s)
        if claims:
            results = await asyncio.gather(*(deliver(c, self._deps) for c in claims), return_exceptions=True)
            for claim, result in zip(claims, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("delivery of notification %s failed: %r", claim.id, result)
        return len(claims)
