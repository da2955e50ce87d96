"""`make bench BENCH_ARGS=--sweep`: find the stack's capacity, its cost per operation and at idle.

After the usual set-up (stack, tokens, seeded catalog, raw limits of the same servers):
1. **Idle**: 20 s of no load (after the seeding's events have settled): CPU per process (cores)
   and RSS, the whole stack summed.
2. **Cost at a fixed rate** (`--cost-rate`, default 50/s, below the old knee so that every
   version of the stack can be compared there): CPU milliseconds per operation of every process,
   PostgreSQL's backends included; then the same for reservations alone (`reserve` only, 20/s), which
   is the whole-stack cost of one booking with its events, mail and board update.
3. **Sweep**: the default mix, open-loop, at rising rates (times `--sweep-factor` from
   `--sweep-start`) until the SLO breaks (any operation's p99 over 250 ms, reservations'
   included, or more than 0.1 % errors), then one rate half-way between the last that held and
   the first that broke. The **capacity** is the highest offered rate that held.
4. **Overload** (`--overload 3`): three times the capacity: goodput (answers within the SLO per
   second), refusals (how many, how fast, with which code) and the event-to-board lag.
5. **Sellout** (`--sellout`, at 70 % of the capacity): 200 buyers race for a 48-seat screening
   while the mix runs (scripts/bench/sellout.py).
Every step reports its raw numbers in report.json; report.md and the terminal get the tables,
sweep.png the plot.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLO_P99_MS = 250.0
SLO_ERROR_RATIO = 0.001
# Not failures of the stack: the driver had nothing to do (a sold-out catalog is a bench problem).
_NOT_ERRORS = frozenset({"CLIENT_SOLD_OUT"})
REFUSALS = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sweep (capacity, cost per operation, idle)")
    group.add_argument("--sweep", action="store_true", help="find the capacity instead of one fixed-rate run")
    group.add_argument("--sweep-start", type=float, default=50.0, help="first rate of the sweep (default 50/s)")
    group.add_argument("--sweep-factor", type=float, default=1.25, help="rate multiplier between steps")
    group.add_argument("--sweep-max", type=float, default=1000.0, help="highest rate tried")
    group.add_argument("--step-seconds", type=float, default=15.0, help="measured seconds per step")
    group.add_argument("--step-warmup", type=float, default=4.0, help="seconds of load before each step's window")
    group.add_argument("--idle-seconds", type=float, default=20.0, help="no-load window for the idle cost; 0 skips")
    group.add_argument("--cost-rate", type=float, default=50.0, help="fixed rate of the CPU-per-operation steps")
    group.add_argument("--overload", type=float, default=3.0, help="overload step at this times capacity; 0 skips")
    group.add_argument("--sellout", action="store_true", help="run the sellout race at 70%% of the capacity")


def budget_s(args: argparse.Namespace) -> float:
    """Upper bound of the sweep's own time, for the run's hard stop."""
    steps = 2 + math.ceil(math.log(max(args.sweep_max / args.sweep_start, 1.0), args.sweep_factor)) + 2
    per_step = args.step_seconds + args.step_warmup + 2 * args.rpc_timeout + 10
    return float(args.idle_seconds + 30 + steps * per_step + (120 if args.sellout else 0))


@dataclass
class Step:
    label: str
    rate: float
    weights: dict[str, float]
    result: dict[str, Any]
    breaches: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.breaches


def breaches_of(result: Mapping[str, Any]) -> list[str]:
    """Why a step broke the SLO (empty when it held)."""
    out: list[str] = []
    ok = errors = 0
    for name, op in result["operations"].items():
        p99 = float(op.get("p99_ms", math.nan))
        if not math.isnan(p99) and p99 > SLO_P99_MS:
            out.append(f"{name} p99 {p99:.0f} ms")
        ok += int(op.get("count", 0))
        errors += sum(n for code, n in op.get("errors", {}).items() if code not in _NOT_ERRORS)
    if ok + errors and errors / (ok + errors) > SLO_ERROR_RATIO:
        out.append(f"errors {errors / (ok + errors):.2%}")
    if ok == 0:
        out.append("nothing answered")
    return out


def cpu_ms_per_operation(result: Mapping[str, Any]) -> dict[str, float]:
    """CPU milliseconds per successful operation of every process in a step (and the stack's sum)."""
    ok = sum(int(op.get("count", 0)) for op in result["operations"].values())
    if not ok:
        return {}
    out = {
        name: r["cpu_s"] * 1000 / ok
        for name, r in result["resources"].items()
        if name not in ("other processes on the machine", "whole machine")
    }
    out["whole stack (load generator excluded)"] = sum(v for k, v in out.items() if not k.startswith("load generator"))
    return out


def goodput(result: Mapping[str, Any], window_s: float) -> float:
    """Answers per second that were correct and within the SLO."""
    return sum(float(op.get("within_slo", 0)) for op in result["operations"].values()) / window_s


def refusal_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    from scripts.bench.stats import percentile

    latencies: list[float] = []
    count = 0
    for op in result["operations"].values():
        for code, values in op.get("error_latencies_ms", {}).items():
            if code in REFUSALS:
                latencies += values
                count += len(values)
    ordered = sorted(latencies)
    return {
        "count": count,
        "p50_ms": percentile(ordered, 50) if ordered else math.nan,
        "p99_ms": percentile(ordered, 99) if ordered else math.nan,
    }


class Sweeper:
    """Runs steps of open-loop load against one stack, one workload carried across the steps."""

    def __init__(self, args: argparse.Namespace, stack: Any, prepared: Any, rng: random.Random) -> None:
        from scripts.bench.workload import make_workload

        self.args = args
        self.stack = stack
        self.prepared = prepared
        self.rng = rng
        self._window = (math.inf, math.inf)
        self.workload = make_workload(
            args.target,
            stack.ingress,
            prepared.catalog,
            prepared.tokens,
            prepared.addresses,
            rng,
            rpc_timeout_s=args.rpc_timeout,
            in_window=lambda at: self._window[0] <= at < self._window[1],
        )
        # The client-side lag probes poll the board; at the fixed run's 100/s they were a load of
        # their own on viewpage. Here the board's own lag histogram is the figure; a few probes
        # keep the client's view.
        self.workload.lag.interval_s = 0.05
        self.workload.lag.max_concurrent = 2

    async def idle(self, seconds: float) -> dict[str, Any]:
        from scripts.bench.resources import LOAD_GENERATOR, ResourceSampler

        print(f"idle: {seconds:.0f} s of no load ...", flush=True)
        sampler = ResourceSampler(self.stack.pids)
        sampler.start()
        await asyncio.sleep(seconds)
        await sampler.stop()
        per = {
            name: {"cores": u.cpu_seconds / seconds, "rss_mib": u.peak_rss / 2**20}
            for name, u in sampler.usage.items()
            if name != LOAD_GENERATOR
        }
        total = {
            "cores": sum(p["cores"] for p in per.values()),
            "rss_mib": sum(p["rss_mib"] for p in per.values()),
        }
        return {"seconds": seconds, "processes": per, "stack": total}

    async def step(self, label: str, rate: float, weights: Mapping[str, float], seconds: float | None = None) -> Step:
        from scripts.bench import serverstats
        from scripts.bench.openloop import OpenLoopRunner, Recorder, schedule
        from scripts.bench.resources import ResourceSampler
        from scripts.bench.run import build_result

        args = self.args
        recorder = Recorder()
        total_s = args.step_warmup + (seconds if seconds is not None else args.step_seconds)
        arrivals = schedule(rate, total_s, weights, self.rng)
        start = time.perf_counter() + 0.2
        window = (start + args.step_warmup, start + total_s)
        recorder.window = window
        self._window = window
        lag_from = len(self.workload.lag.lags_s)
        probes_from, timeouts_from = self.workload.lag.probes, self.workload.lag.timeouts
        runner = OpenLoopRunner(self.workload.operations(), recorder, max_in_flight=args.max_in_flight)
        sampler = ResourceSampler(self.stack.pids)
        scrapes: dict[str, Any] = {}

        async def measure() -> None:
            await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
            scrapes["before"] = await serverstats.scrape(self.stack.metrics_ports)
            sampler.start()
            await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
            await sampler.stop()
            scrapes["after"] = await serverstats.scrape(self.stack.metrics_ports)

        measuring = asyncio.ensure_future(measure())
        await runner.run(start, arrivals)
        await measuring
        cancelled = await runner.drain(args.rpc_timeout + 2)
        window_s = window[1] - window[0]
        result = build_result(
            recorder=recorder,
            weights=weights,
            window_s=window_s,
            scrapes=scrapes,
            lag_s=self.workload.lag.lags_s[lag_from:],
            lag_timeouts=self.workload.lag.timeouts - timeouts_from,
            lag_probes_per_s=(self.workload.lag.probes - probes_from) / total_s,
            lag_interval_s=self.workload.lag.interval_s,
            usage={n: (u.cpu_seconds, u.peak_rss) for n, u in sampler.usage.items()},
            machine_cpu_s=sampler.machine_cpu_seconds,
            raw=self.prepared.raw,
            profiles={},
        )
        for name, op in result["operations"].items():
            stats = recorder.ops.get(name)
            latencies = stats.latencies_s if stats else []
            op["within_slo"] = sum(1 for x in latencies if x * 1000 <= SLO_P99_MS)
            op["error_latencies_ms"] = {
                code: [x * 1000 for x in values] for code, values in (stats.error_latencies_s if stats else {}).items()
            }
        result["offered_per_s"] = rate
        result["sent"] = runner.sent
        result["cancelled_at_end"] = cancelled
        result["window_s"] = window_s
        result["goodput_per_s"] = goodput(result, window_s)
        step = Step(label, rate, dict(weights), result, breaches_of(result))
        print(self.describe(step), flush=True)
        return step

    @staticmethod
    def describe(step: Step) -> str:
        r = step.result
        total = r["total"]
        reserve = r["operations"].get("reserve", {})
        errors = sum(total["errors"].values())
        verdict = "held" if step.held else "BROKE: " + ", ".join(step.breaches)
        return (
            f"  {step.label:<10} {step.rate:6.0f}/s offered  {total['rate_per_s']:6.1f}/s ok  "
            f"p99 all {total['p99_ms']:6.0f} ms  reserve {reserve.get('p99_ms', math.nan):6.0f} ms  "
            f"errors {errors:5d}  lag p99 {r['lag']['board']['p99_ms']:6.0f} ms  {verdict}"
        )


async def run_sweep(
    args: argparse.Namespace,
    stack: Any,
    prepared: Any,
    weights: Mapping[str, float],
    rng: random.Random,
    report_dir: Path,
    tag: str,
    started_at: Any,
) -> dict[str, Any]:
    import os
    import platform

    sweeper = Sweeper(args, stack, prepared, rng)
    out: dict[str, Any] = {
        "run": {
            "kind": "sweep",
            "started_at": started_at.isoformat(timespec="seconds"),
            "tag": tag,
            "target": args.target,
            "scratch": stack.scratch,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "weights": dict(weights),
            "step_seconds": args.step_seconds,
        },
        "catalog": {
            "movies": len(prepared.catalog.movie_ids),
            "screenings": len(prepared.catalog.screenings),
            "seats": prepared.catalog.seats,
            "seed_s": prepared.seed_s,
            "propagate_s": prepared.propagate_s,
        },
        "raw": prepared.raw,
    }
    try:
        if args.idle_seconds > 0:
            await asyncio.sleep(5.0)  # the seeding's events settle first
            out["idle"] = await sweeper.idle(args.idle_seconds)
        print(f"cost at {args.cost_rate:.0f}/s: the mix, then reservations alone ...", flush=True)
        mix = await sweeper.step("cost mix", args.cost_rate, weights)
        # Reservations alone at a rate every version holds: failed work would inflate the cost.
        reserve_only = await sweeper.step("cost book", min(args.cost_rate, 20.0), {"reserve": 1.0})
        out["cost"] = {
            "rate": args.cost_rate,
            "mix_cpu_ms_per_op": cpu_ms_per_operation(mix.result),
            "reserve_cpu_ms_per_op": cpu_ms_per_operation(reserve_only.result),
            "mix": mix.result,
            "reserve": reserve_only.result,
        }
        print("sweep: rising rates until the SLO breaks ...", flush=True)
        steps: list[Step] = []
        rate = args.sweep_start
        while rate <= args.sweep_max:
            step = await sweeper.step("sweep", rate, weights)
            steps.append(step)
            if not step.held:
                break
            rate *= args.sweep_factor
        # The first rate already broke (a slower stack, a busy machine): walk down instead.
        while steps and not any(s.held for s in steps) and rate / args.sweep_factor >= 5:
            rate /= args.sweep_factor
            step = await sweeper.step("sweep", rate, weights)
            steps.append(step)
        held = sorted((s for s in steps if s.held), key=lambda s: s.rate)
        broke = sorted((s for s in steps if not s.held and held and s.rate > held[-1].rate), key=lambda s: s.rate)
        if held and broke:
            middle = (held[-1].rate + broke[0].rate) / 2
            if middle - held[-1].rate >= 5:
                step = await sweeper.step("bisect", middle, weights)
                steps.append(step)
                if step.held:
                    held.append(step)
        capacity = max((s.rate for s in held), default=0.0)
        out["steps"] = [{"label": s.label, "rate": s.rate, "breaches": s.breaches, **s.result} for s in steps]
        out["capacity_per_s"] = capacity
        print(f"capacity: {capacity:.0f} operations/s (default mix, SLO p99 <= {SLO_P99_MS:.0f} ms, errors <= 0.1%)")
        if capacity > 0 and args.sellout:
            out["sellout"] = await run_sellout_under_load(sweeper, capacity * 0.7, weights)
        if capacity > 0 and args.overload > 0:
            over = await sweeper.step("overload", capacity * args.overload, weights)
            out["overload"] = {
                "factor": args.overload,
                "offered_per_s": over.rate,
                "goodput_per_s": over.result["goodput_per_s"],
                "goodput_share_of_capacity": over.result["goodput_per_s"] / capacity,
                "refusals": refusal_summary(over.result),
                "errors": over.result["total"]["errors"],
                "board_lag_p99_ms": over.result["lag"]["board"]["p99_ms"],
                "result": over.result,
            }
    finally:
        await sweeper.workload.lag.stop()
        await sweeper.workload.close()
    from scripts.bench.run import _clean
    from scripts.bench.sweep_report import write_sweep_reports

    cleaned: dict[str, Any] = _clean(out)
    write_sweep_reports(cleaned, report_dir)
    return cleaned


async def run_sellout_under_load(sweeper: Sweeper, rate: float, weights: Mapping[str, float]) -> dict[str, Any]:
    """The sellout race (scripts/bench/sellout.py) while the default mix runs at `rate`."""
    from scripts.bench import sellout

    print(f"sellout: 200 buyers for 48 seats while the mix runs at {rate:.0f}/s ...", flush=True)
    prepared = sweeper.prepared
    # The background runs longer than the race can (30 s, plus scheduling the screening).
    background = asyncio.ensure_future(sweeper.step("sellout", rate, weights, seconds=50.0))
    try:
        await asyncio.sleep(sweeper.args.step_warmup)
        race = await sellout.run_sellout(
            prepared.addresses,
            prepared.tokens.manager,
            prepared.tokens.customers,
            postgres_url=sweeper.stack.store_urls.get("postgres"),
            rpc_timeout_s=sweeper.args.rpc_timeout,
            rng=sweeper.rng,
        )
    finally:
        load = await background
    for line in sellout.describe_result(race):
        print(f"  {line}", flush=True)
    return {"rate": rate, "race": race, "load": load.result}


__all__ = ["add_arguments", "breaches_of", "budget_s", "cpu_ms_per_operation", "run_sweep"]
