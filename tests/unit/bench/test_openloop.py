"""The open-loop scheduler: Poisson arrivals at the asked rate, weighted choice, sends on the clock
whatever the calls in flight do, latency from the intended time, backlog cap, window bounds."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics

import pytest

from scripts.bench.openloop import (
    CLIENT_BACKLOG,
    SKIPPED,
    OpenLoopRunner,
    Recorder,
    WeightedChoice,
    poisson_arrivals,
    schedule,
)


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    arrivals = poisson_arrivals(200.0, 100.0, random.Random(1))
    assert arrivals == sorted(arrivals) and arrivals[-1] < 100.0
    assert len(arrivals) == pytest.approx(20_000, rel=0.03)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 200, rel=0.03)
    # exponential: the standard deviation equals the mean (a fixed-interval clock would give 0)
    assert statistics.pstdev(gaps) == pytest.approx(mean, rel=0.05)


def test_no_arrivals_for_a_zero_rate_or_duration() -> None:
    assert poisson_arrivals(0, 10, random.Random(1)) == []
    assert poisson_arrivals(10, 0, random.Random(1)) == []


def test_weighted_choice_follows_the_weights_and_never_picks_a_zero_weight() -> None:
    chooser = WeightedChoice({"board": 3, "reserve": 1, "review": 0})
    assert chooser.shares() == {"board": 0.75, "reserve": 0.25}
    rng = random.Random(5)
    picks = [chooser.pick(rng) for _ in range(40_000)]
    assert "review" not in picks
    assert picks.count("board") / len(picks) == pytest.approx(0.75, abs=0.01)
    with pytest.raises(ValueError):
        WeightedChoice({"board": 0})


def test_schedule_pairs_each_arrival_with_an_operation() -> None:
    arrivals = schedule(50, 2, {"a": 1, "b": 1}, random.Random(2))
    assert all(op in ("a", "b") for _, op in arrivals)
    assert [t for t, _ in arrivals] == sorted(t for t, _ in arrivals)


class FakeClock:
    """Time moves only when the runner sleeps (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)  # calls fired before this sleep start now, at the current time
        self.now += seconds


async def test_calls_go_out_on_schedule_even_when_earlier_calls_have_not_returned() -> None:
    clock = FakeClock()
    recorder = Recorder()
    recorder.window = (0.0, 1e9)
    release = asyncio.Event()
    started: list[float] = []

    async def slow() -> str | None:
        started.append(clock.now)
        await release.wait()  # the system under test stalls
        return None

    runner = OpenLoopRunner({"op": slow}, recorder, clock=clock, sleep=clock.sleep)
    await runner.run(start=100.0, arrivals=[(0.1, "op"), (0.2, "op"), (0.5, "op")])
    await asyncio.sleep(0)
    # all three were sent at their times although none had answered (closed-loop would send one)
    assert started == pytest.approx([100.1, 100.2, 100.5])
    assert runner.in_flight == 3 and runner.most_in_flight == 3
    clock.now = 101.0  # the stall ends at t = 101
    release.set()
    await runner.drain(1.0)
    # latency from the *intended* time: the first call waited 0.9 s, not 0 s
    assert sorted(recorder.ops["op"].latencies_s) == pytest.approx([0.5, 0.8, 0.9])


async def test_a_late_generator_sends_at_once_and_counts_its_lateness() -> None:
    clock = FakeClock()
    recorder = Recorder()
    recorder.window = (0.0, 1e9)

    async def instant() -> str | None:
        return None

    runner = OpenLoopRunner({"op": instant}, recorder, clock=clock, sleep=clock.sleep)
    clock.now = 100.3  # the event loop was busy: arrivals at 100.1 and 100.2 are overdue
    await runner.run(start=100.0, arrivals=[(0.1, "op"), (0.2, "op")])
    await runner.drain(1.0)
    assert clock.sleeps == []
    assert sorted(recorder.ops["op"].latencies_s) == pytest.approx([0.1, 0.2])


async def test_errors_skips_backlog_and_the_window() -> None:
    clock = FakeClock()
    recorder = Recorder()
    recorder.window = (100.15, 100.45)
    outcomes = iter(["UNAVAILABLE", SKIPPED, None, None])

    async def op() -> str | None:
        return next(outcomes)

    async def hangs() -> str | None:
        await asyncio.Event().wait()
        return None

    runner = OpenLoopRunner({"op": op, "hang": hangs}, recorder, max_in_flight=1, clock=clock, sleep=clock.sleep)
    runner.fire("hang", 100.0)  # before the window: occupies the only slot
    await runner.run(start=100.0, arrivals=[(0.2, "op"), (0.3, "op")])
    assert recorder.ops["op"].errors == {CLIENT_BACKLOG: 2}
    assert runner.sent == 1
    cancelled = await runner.drain(0.01)
    assert cancelled == 1
    assert "hang" not in recorder.ops  # intended before the window: not counted
    assert recorder.errors_all_phases["hang CANCELLED_AT_STOP"] == 1

    runner = OpenLoopRunner({"op": op}, recorder, clock=clock, sleep=clock.sleep)
    await runner.run(start=100.0, arrivals=[(0.2, "op"), (0.3, "op"), (0.4, "op"), (0.5, "op")])
    await runner.drain(1.0)
    stats = recorder.ops["op"]
    assert stats.errors == {CLIENT_BACKLOG: 2, "UNAVAILABLE": 1}
    assert stats.skipped == 1
    assert len(stats.latencies_s) == 1  # the call intended at 100.5 is after the window
    assert recorder.ok_count == 2


async def test_a_bug_in_an_operation_is_an_error_not_a_crash() -> None:
    recorder = Recorder()
    recorder.window = (0.0, 1e12)

    async def broken() -> str | None:
        raise KeyError("x")

    runner = OpenLoopRunner({"op": broken}, recorder)
    runner.fire("op", recorder.t0)
    await runner.drain(1.0)
    assert recorder.ops["op"].errors == {"CLIENT_KeyError": 1}
