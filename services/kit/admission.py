"""Admission control: past its capacity a service refuses new RPCs at once, with a retry hint.

A Python service that accepts every request queues the excess on its event loop, and every
caller then waits: at twice the capacity the queue grows without bound and answers take
seconds (measured before this module: offered 150/s, the stack served 57/s with a p50 of 8.9 s).
Refusing early keeps what is admitted fast and tells the rest, honestly and before any work
has started (no seat claimed, no payment asked), to come back later: UNAVAILABLE with
`google.rpc.RetryInfo` and `ErrorInfo(reason=OVERLOADED)`.

The limit is on RPCs in flight in this process, and it adapts (additive increase,
multiplicative decrease, as in Netflix's concurrency-limits AIMD): while the admitted RPCs end
within `target_s` the limit creeps up by 1/limit per RPC, up to `max_in_flight`; when a window
of RPCs shows them slower than that (the machine is saturated and work is queueing for the
CPU), the limit is cut by `backoff` (at most once per window), down to `min_in_flight`. An RPC
that finds the service full waits for a slot, then is refused. How long depends on the queue (as
in CoDel and Facebook's adaptive queueing): in a burst — the queue was empty within the last
`overload_after_s` — up to `burst_queue_s` (200 buyers arriving at once for one screening are
served, not turned away); in an overload — the queue has not emptied for longer — only
`queue_s`, so the excess is refused within milliseconds instead of waiting its turn. A caller's
deadline that leaves less than `min_deadline_s` is refused at once: the work would only expire.

Only unary RPCs are limited. Health, reflection and the methods named in `exempt` are never
refused (probes must see the truth, not an overload).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from prometheus_client import Counter, Gauge

from services.kit import errors
from services.kit.grpc_errors import abort_with_domain_error
from services.kit.rpc_wrapping import wrap_handler

log = logging.getLogger(__name__)

OVERLOADED = "OVERLOADED"
_ALWAYS_ADMITTED = ("/grpc.health.v1.", "/grpc.reflection.")

SHED = Counter(
    "cinema_admission_refused_total",
    "RPCs refused before any work because the service was at its concurrency limit.",
    ("grpc_method", "why"),
)
LIMIT = Gauge("cinema_admission_limit", "The adaptive limit of RPCs in flight.")
IN_FLIGHT = Gauge("cinema_admission_in_flight", "RPCs admitted and not yet finished.")


@dataclass(frozen=True)
class AdmissionSettings:
    max_in_flight: int = 64  # 0 = no admission control
    min_in_flight: int = 4
    target_s: float = 0.2
    queue_s: float = 0.02  # the wait for a slot while overloaded
    burst_queue_s: float = 0.5  # the wait for a slot in a burst (the queue was empty lately)
    overload_after_s: float = 0.1  # a queue that has not emptied for this long means overload
    retry_after_s: float = 0.25
    min_deadline_s: float = 0.02
    window: int = 20
    backoff: float = 0.8


class AdaptiveLimit:
    """AIMD on the latency of admitted RPCs (pure arithmetic, no I/O: unit-testable)."""

    def __init__(self, settings: AdmissionSettings) -> None:
        self._s = settings
        self.limit = float(settings.max_in_flight)
        self._slow = 0
        self._seen = 0

    def on_done(self, seconds: float) -> None:
        s = self._s
        self._seen += 1
        if seconds > s.target_s:
            self._slow += 1
        if self._seen < s.window:
            if seconds <= s.target_s:
                self.limit = min(float(s.max_in_flight), self.limit + 1.0 / self.limit)
            return
        # A window: cut when a tenth of it was slow (p90 over the target), else keep growing.
        if self._slow * 10 >= self._seen:
            self.limit = max(float(s.min_in_flight), self.limit * s.backoff)
        self._slow = self._seen = 0


class AdmissionControl(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """The outermost interceptor: admits an RPC, makes it wait briefly, or refuses it."""

    def __init__(self, settings: AdmissionSettings, exempt: Iterable[str] = ()) -> None:
        self._s = settings
        self._limit = AdaptiveLimit(settings)
        self._in_flight = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._exempt = frozenset(exempt)
        self._last_empty = time.monotonic()
        LIMIT.set(self._limit.limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def limit(self) -> float:
        return self._limit.limit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if (
            handler is None
            or handler.response_streaming  # a long-lived stream would hold a slot and skew the latency signal
            or self._s.max_in_flight <= 0
            or method.startswith(_ALWAYS_ADMITTED)
            or method in self._exempt
        ):
            return handler
        return wrap_handler(handler, lambda context: self._admitted(method, context))

    @asynccontextmanager
    async def _admitted(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        remaining = context.time_remaining()
        if remaining is not None and remaining < self._s.min_deadline_s:
            await self._refuse(method, context, "deadline")
        if self._in_flight >= self._limit.limit:
            if not await self._wait_for_slot(self._wait_budget(remaining)):
                await self._refuse(method, context, "limit")
        elif not self._waiting:
            self._last_empty = time.monotonic()
        self._in_flight += 1
        IN_FLIGHT.set(self._in_flight)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._in_flight -= 1
            IN_FLIGHT.set(self._in_flight)
            self._limit.on_done(time.perf_counter() - start)
            LIMIT.set(self._limit.limit)
            self._release_one()

    def _wait_budget(self, remaining: float | None) -> float:
        """How long an RPC may wait for a slot: a burst (the queue emptied within the last
        `overload_after_s`) is absorbed, an overload (it has not) is refused almost at once."""
        overloaded = time.monotonic() - self._last_empty > self._s.overload_after_s
        budget = self._s.queue_s if overloaded else max(self._s.queue_s, self._s.burst_queue_s)
        if remaining is not None:
            budget = min(budget, remaining - self._s.min_deadline_s)
        return budget

    async def _wait_for_slot(self, budget: float) -> bool:
        if budget <= 0:
            return False
        if not self._waiting:
            self._last_empty = time.monotonic()  # the queue was empty until this waiter
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(budget):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):  # already handed a slot and popped
                self._waiting.remove(waiter)

    def _release_one(self) -> None:
        # Hand the freed slot to the longest waiter (FIFO); it counts itself in when it resumes.
        while self._waiting and self._in_flight < self._limit.limit:
            waiter = self._waiting.popleft()
            if not self._waiting:
                self._last_empty = time.monotonic()  # served down to an empty queue: caught up
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _refuse(self, method: str, context: grpc.aio.ServicerContext[Any, Any], why: str) -> None:
        SHED.labels(method, why).inc()
        message = (
            "the service is at capacity; retry after the hint"
            if why == "limit"
            else "the request's deadline leaves no time to serve it"
        )
        await abort_with_domain_error(
            context, errors.Unavailable(message, retry_after_s=self._s.retry_after_s, reason=OVERLOADED)
        )


__all__ = ["OVERLOADED", "AdaptiveLimit", "AdmissionControl", "AdmissionSettings"]
