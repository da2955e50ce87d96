"""The open-loop load generator: Poisson arrivals on the clock, latency from the intended send time.

A closed-loop generator (N workers, each sending when its last call returned) slows down with
the system under test and so hides its stalls (coordinated omission). Here the arrival times are
drawn up front from an exponential inter-arrival distribution at the target rate; each call is
started at its arrival time whether or not earlier calls have returned, and its latency is
measured from the time it *should* have been sent. When the generator itself falls behind (a
busy event loop), the late calls go out at once and their lateness counts in their latency.
A cap on calls in flight keeps a collapsed system from exhausting the machine: an arrival
over the cap is not sent and counts as an error (`CLIENT_BACKLOG`).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from scripts.bench.stats import LatencySummary, summarize

CLIENT_BACKLOG = "CLIENT_BACKLOG"
SKIPPED = "SKIPPED"  # nothing to do for this arrival (e.g. a cancel with no reservation to cancel)


def poisson_arrivals(rate_per_s: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival offsets (seconds from the start, ascending, all < duration_s) of a Poisson process."""
    if rate_per_s <= 0 or duration_s <= 0:
        return []
    offsets: list[float] = []
    at = rng.expovariate(rate_per_s)
    while at < duration_s:
        offsets.append(at)
        at += rng.expovariate(rate_per_s)
    return offsets


class WeightedChoice:
    """Picks operation names in proportion to their weights (zero weights never picked)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        items = [(name, float(w)) for name, w in weights.items() if w > 0]
        if not items:
            raise ValueError("at least one operation needs a positive weight")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights cannot be negative")
        self.names = [name for name, _ in items]
        self.cumulative = list(itertools.accumulate(w for _, w in items))

    def pick(self, rng: random.Random) -> str:
        x = rng.random() * self.cumulative[-1]
        return self.names[min(bisect.bisect_right(self.cumulative, x), len(self.names) - 1)]

    def shares(self) -> dict[str, float]:
        total = self.cumulative[-1]
        previous = 0.0
        out = {}
        for name, cum in zip(self.names, self.cumulative, strict=True):
            out[name] = (cum - previous) / total
            previous = cum
        return out


@dataclass
class OperationStats:
    """What one operation did in the measured window."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    # How long the refused and failed calls took, per code: past capacity a refusal must be fast.
    error_latencies_s: dict[str, list[float]] = field(default_factory=dict)

    def summary(self, window_s: float) -> LatencySummary:
        return summarize(self.latencies_s, window_s)


class Recorder:
    """Collects outcomes per operation; only outcomes of calls *intended* inside the measured
    window count (warm-up and the profiling phase after it do not)."""

    def __init__(self) -> None:
        self.ops: dict[str, OperationStats] = {}
        self.window: tuple[float, float] | None = None  # perf_counter bounds of the measured window
        self.per_second: Counter[int] = Counter()  # completions by whole second since the start
        self.errors_per_second: Counter[int] = Counter()
        self.samples: list[tuple[str, float, float]] = []  # (op, intended offset s, latency s) for the plot
        self.ok_count = 0
        self.error_count = 0
        self.errors_all_phases: Counter[str] = Counter()  # "op CODE", warm-up and profiling included
        self.t0 = time.perf_counter()

    def _in_window(self, intended: float) -> bool:
        return self.window is not None and self.window[0] <= intended < self.window[1]

    def ok(self, op: str, intended: float, latency_s: float) -> None:
        self.ok_count += 1
        self.per_second[int(intended - self.t0)] += 1
        if self._in_window(intended):
            self.ops.setdefault(op, OperationStats()).latencies_s.append(latency_s)
            self.samples.append((op, intended - self.t0, latency_s))

    def error(self, op: str, intended: float, code: str, latency_s: float | None = None) -> None:
        self.error_count += 1
        self.errors_all_phases[f"{op} {code}"] += 1
        self.errors_per_second[int(intended - self.t0)] += 1
        if self._in_window(intended):
            stats = self.ops.setdefault(op, OperationStats())
            stats.errors[code] += 1
            if latency_s is not None:
                stats.error_latencies_s.setdefault(code, []).append(latency_s)

    def skip(self, op: str, intended: float) -> None:
        if self._in_window(intended):
            self.ops.setdefault(op, OperationStats()).skipped += 1


Operation = Callable[[], Awaitable[str | None]]  # returns None on success, an error code otherwise


@dataclass
class OpenLoopRunner:
    """Fires `operations[name]()` at each arrival; latency from the intended time to completion.

    `clock` and `sleep` are injectable so the schedule can be tested without waiting.
    """

    operations: Mapping[str, Operation]
    recorder: Recorder
    max_in_flight: int = 2000
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    in_flight: int = 0
    most_in_flight: int = 0
    sent: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, start: float, arrivals: Sequence[tuple[float, str]]) -> None:
        """Send every (offset, operation) at start + offset; returns once all are *sent*."""
        for offset, name in arrivals:
            intended = start + offset
            delay = intended - self.clock()
            if delay > 0:
                await self.sleep(delay)
            self.fire(name, intended)

    def fire(self, name: str, intended: float) -> None:
        if self.in_flight >= self.max_in_flight:
            self.recorder.error(name, intended, CLIENT_BACKLOG)
            return
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.sent += 1
        task = asyncio.ensure_future(self._call(name, intended))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, name: str, intended: float) -> None:
        try:
            code = await self.operations[name]()
        except asyncio.CancelledError:
            code = "CANCELLED_AT_STOP"
        except Exception as exc:  # a bug in the driver must not stop the run; it shows in the table
            code = f"CLIENT_{type(exc).__name__}"
        finally:
            self.in_flight -= 1
        if code is None:
            self.recorder.ok(name, intended, self.clock() - intended)
        elif code == SKIPPED:
            self.recorder.skip(name, intended)
        else:
            self.recorder.error(name, intended, code, self.clock() - intended)

    async def drain(self, timeout_s: float) -> int:
        """Wait for calls in flight up to `timeout_s`, then cancel the rest; returns how many were cancelled."""
        pending = set(self.tasks)
        if not pending:
            return 0
        _done, still = await asyncio.wait(pending, timeout=timeout_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5)
        return len(still)


def schedule(
    rate_per_s: float, duration_s: float, weights: Mapping[str, float], rng: random.Random
) -> list[tuple[float, str]]:
    """The whole run's arrivals: Poisson times, each with an operation drawn by weight."""
    chooser = WeightedChoice(weights)
    return [(at, chooser.pick(rng)) for at in poisson_arrivals(rate_per_s, duration_s, rng)]
