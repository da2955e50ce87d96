"""The steady reservation load a scenario runs under: an open-loop driver (a new reservation
every 1/rate seconds, whatever the system answers), through the Envoy ingress over gRPC, as the
demo customer.

What a client may retry is what the contract says: CreateReservation carries a request id, so
UNAVAILABLE (after its retry hint), DEADLINE_EXCEEDED, ABORTED and RESOURCE_EXHAUSTED are
retried with the same request id until a definite answer (bounded by GIVE_UP_S); every other
status is final. CancelReservation is idempotent (cancelling a cancelled reservation returns it
unchanged), so it is retried the same way. Each request gets seats nobody else asks for, so a
refusal is never a seat conflict of the load's own making.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import grpc
import grpc.aio

from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.bench.catalog import retry_hint_s

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
GIVE_UP_S = 60.0
START_AGAIN = "FAILED_PRECONDITION/PAYMENT_NOT_COMPLETED"  # "start again with a new request_id"
RESTARTS = 2
ATTEMPT_TIMEOUT_S = 8.0
CARD = Card(number="4242424242424242", expiry_month=12, expiry_year=2035, cvc="123")
Metadata = tuple[tuple[str, str], ...]


@dataclass
class Outcome:
    """One logical request: its first attempt, its answer, the statuses of the attempts that failed."""

    kind: str  # reserve | cancel
    started: float
    ended: float = 0.0
    status: str = ""  # OK or the final gRPC status name (with its reason when there is one)
    attempt_errors: list[str] = field(default_factory=list)
    reservation_id: str = ""
    restarts: int = 0  # new request ids the answers asked for

    @property
    def ok(self) -> bool:
        return self.status == "OK"


@dataclass
class SeatPool:
    """Seats handed out once each, screening by screening."""

    screenings: list[tuple[str, int, int]]  # id, rows, seats per row
    _next: dict[str, int] = field(default_factory=dict)

    def take(self, rng: random.Random) -> tuple[str, list[str]] | None:
        open_ = [s for s in self.screenings if self._next.get(s[0], 0) < s[1] * s[2]]
        if not open_:
            return None
        sid, rows, per_row = rng.choice(open_)
        count = rng.choice((1, 1, 2))
        first = self._next.get(sid, 0)
        last = min(first + count, rows * per_row)
        self._next[sid] = last
        return sid, [f"{chr(65 + i // per_row)}{i % per_row + 1}" for i in range(first, last)]


def _reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a status, when the service sent one."""
    from google.rpc import error_details_pb2  # type: ignore[import-untyped]

    from services.kit.grpc_errors import find_detail

    info = find_detail(err, error_details_pb2.ErrorInfo)
    return str(info.reason) if info is not None else ""


def _status(err: grpc.aio.AioRpcError) -> str:
    reason = _reason(err)
    return f"{err.code().name}/{reason}" if reason else err.code().name


class LoadDriver:
    def __init__(
        self, ingress: str, metadata: Metadata, pool: SeatPool, rate: float, cancel_share: float, seed: int
    ) -> None:
        self.ingress = ingress
        self.metadata = metadata
        self.pool = pool
        self.rate = rate
        self.cancel_share = cancel_share
        self.rng = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.ingress)
        self._stub = reservation_pb2_grpc.ReservationServiceStub(self._channel)
        self._runner = asyncio.create_task(self._arrivals())

    async def stop(self) -> None:
        """Stop new arrivals and wait until every request in flight has its final answer."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._channel is not None:
            await self._channel.close(None)

    async def _arrivals(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._spawn(self._reserve())
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _with_retries(self, outcome: Outcome, call: object, request: object) -> object | None:
        assert callable(call)
        delay = 0.1
        while True:
            try:
                reply = await call(request, metadata=self.metadata, timeout=ATTEMPT_TIMEOUT_S)
            except grpc.aio.AioRpcError as err:
                status = _status(err)
                if err.code() not in RETRYABLE or time.monotonic() - outcome.started > GIVE_UP_S:
                    outcome.status, outcome.ended = status, time.monotonic()
                    return None
                outcome.attempt_errors.append(status)
                # the server's retry hint when it gives one (as the contract asks), else backoff
                hint = retry_hint_s(err)
                await asyncio.sleep(max(hint or 0.0, delay * (0.5 + self.rng.random())))
                delay = min(delay * 2, 2.0)
                continue
            outcome.status, outcome.ended = "OK", time.monotonic()
            return cast(object, reply)

    async def _reserve(self) -> None:
        taken = self.pool.take(self.rng)
        if taken is None:
            return
        screening_id, seats = taken
        outcome = Outcome("reserve", time.monotonic())
        self.outcomes.append(outcome)
        reply: object | None = None
        for _ in range(RESTARTS + 1):
            request = reservation_pb2.CreateReservationRequest(
                screening_id=screening_id, seats=seats, request_id=str(uuid.uuid4()), card=CARD
            )
            reply = await self._with_retries(outcome, self._stub.CreateReservation, request)
            if outcome.status != START_AGAIN:
                break
            # what the answer asks for: the seats were released, start again with a new request id
            outcome.restarts += 1
            outcome.attempt_errors.append(START_AGAIN)
        if not isinstance(reply, reservation_pb2.CreateReservationResponse):
            return
        outcome.reservation_id = reply.reservation.id
        if reply.reservation.state != reservation_pb2.RESERVATION_STATE_CONFIRMED:
            outcome.status = f"answered {reservation_pb2.ReservationState.Name(reply.reservation.state)}"
            return
        if self.rng.random() < self.cancel_share:
            await asyncio.sleep(self.rng.uniform(0.2, 1.5))
            cancel = Outcome("cancel", time.monotonic(), reservation_id=reply.reservation.id)
            self.outcomes.append(cancel)
            await self._with_retries(
                cancel,
                self._stub.CancelReservation,
                reservation_pb2.CancelReservationRequest(reservation_id=reply.reservation.id, reason="chaos"),
            )


@dataclass
class LoadSummary:
    attempted: int
    succeeded: int
    failed_by_status: dict[str, int]
    retried_attempts_by_status: dict[str, int]
    converged_after_retry: int
    started_again: int  # requests that got "start again with a new request_id" and did
    cancels_attempted: int
    cancels_succeeded: int
    cancel_failed_by_status: dict[str, int]
    recovery_s: float | None  # from the fault until requests succeed at the first attempt again
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def failed(self) -> int:
        return sum(self.failed_by_status.values())


def summarize(outcomes: list[Outcome], fault_at: float | None) -> LoadSummary:
    reserves = [o for o in outcomes if o.kind == "reserve"]
    cancels = [o for o in outcomes if o.kind == "cancel"]
    troubled = [o for o in outcomes if not o.ok or o.attempt_errors]
    recovery: float | None = None
    if fault_at is not None:
        after = [o.ended for o in troubled if o.ended >= fault_at]
        recovery = max(after) - fault_at if after else 0.0
    latencies = sorted((o.ended - o.started) * 1000 for o in reserves if o.ok)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return LoadSummary(
        attempted=len(reserves),
        succeeded=sum(o.ok for o in reserves),
        failed_by_status=dict(Counter(o.status for o in reserves if not o.ok)),
        retried_attempts_by_status=dict(Counter(s for o in outcomes for s in o.attempt_errors)),
        converged_after_retry=sum(1 for o in reserves if o.ok and o.attempt_errors),
        started_again=sum(1 for o in reserves if o.restarts),
        cancels_attempted=len(cancels),
        cancels_succeeded=sum(o.ok for o in cancels),
        cancel_failed_by_status=dict(Counter(o.status for o in cancels if not o.ok)),
        recovery_s=recovery,
        latency_p50_ms=pct(0.5),
        latency_p99_ms=pct(0.99),
    )
