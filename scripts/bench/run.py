"""`python -m scripts.bench`: the whole benchmark, from an empty folder to report.md.

1. Start the whole local stack in a scratch folder on free ports (or use the running one).
2. Seed the catalog through the movie API; wait until reservation and the board know it.
3. Measure the raw limits (echo, INSERT, GET, publish) against the same servers.
4. Drive the mixed workload open-loop: warm-up, the measured window (server histograms scraped
   and CPU/RSS sampled around it), then a profiling phase at the same load (py-spy on every
   service; excluded from the numbers).
5. Write report.md, report.json and latency.png under .data/bench/<timestamp>/, print the table.

Bounded in time (every phase has a deadline, the whole async part a hard stop), loopback only,
and everything started here is stopped on the way out, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / ".data" / "bench"
LOAD_GENERATOR = "load generator (this process)"

# (label, service, method) of the server-side time each hop reports about itself
SERVER_HOPS = (
    ("reserve: CreateReservation on reservation (incl. payment)", "reservation", "CreateReservation"),
    ("cancel: CancelReservation on reservation", "reservation", "CancelReservation"),
    ("board: GetBoard on viewpage", "viewpage", "GetBoard"),
    ("movie_board: GetMovieBoard on viewpage", "viewpage", "GetMovieBoard"),
    ("lag probe: ListCustomerReservations on viewpage", "viewpage", "ListCustomerReservations"),
    ("movie: GetMovie on movie", "movie", "GetMovie"),
    ("review: CreateReview on review", "review", "CreateReview"),
)
STORE_OF = {"reservation": "postgres", "payment": "postgres", "notification": "postgres", "movie": "mongo"}
STORE_OF |= {"review": "mongo", "viewpage": "redis"}
# (label, (operation or "all", statistic), (raw limit, concurrency)): the same statistic on both sides
RATIOS = (
    ("reserve ok/s ÷ echo ops/s (64 in flight)", ("reserve", "rate_per_s"), ("grpc_echo", "c64")),
    ("reserve ok/s ÷ INSERT tx/s (64 in flight)", ("reserve", "rate_per_s"), ("pg_insert", "c64")),
    ("all ok/s ÷ echo ops/s (64 in flight)", ("all", "rate_per_s"), ("grpc_echo", "c64")),
    ("reserve p50 ÷ echo p50 (1 in flight)", ("reserve", "p50_ms"), ("grpc_echo", "c1")),
    ("reserve p50 ÷ INSERT tx p50 (1 in flight)", ("reserve", "p50_ms"), ("pg_insert", "c1")),
    ("board (GetBoard) p50 ÷ Redis GET p50 (1 in flight)", ("board", "p50_ms"), ("redis_get", "c1")),
    ("movie_board p50 ÷ Redis GET p50 (1 in flight)", ("movie_board", "p50_ms"), ("redis_get", "c1")),
    ("movie (GetMovie) p50 ÷ echo p50 (1 in flight)", ("movie", "p50_ms"), ("grpc_echo", "c1")),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    from scripts.bench.workload import DEFAULT_WEIGHTS

    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured window, seconds (default 60)")
    parser.add_argument("--rate", type=float, default=100.0, help="offered arrivals per second, all operations")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before the window")
    parser.add_argument("--use-running", action="store_true", help="benchmark the stack `make up` runs")
    parser.add_argument(
        "--target",
        choices=("direct", "ingress", "rest"),
        default="direct",
        help="direct: gRPC to each service; ingress: gRPC through Envoy; rest: REST/JSON through Envoy and the gateway",
    )
    parser.add_argument(
        "--weights",
        default="",
        help="e.g. reserve=40,board=10 (defaults: " + ",".join(f"{k}={v}" for k, v in DEFAULT_WEIGHTS.items()) + ")",
    )
    parser.add_argument("--movies", type=int, default=20)
    parser.add_argument("--screenings", type=int, default=200)
    parser.add_argument("--customers", type=int, default=300, help="customer tokens minted up front")
    parser.add_argument("--raw-seconds", type=float, default=5.0, help="per raw limit and concurrency; 0 skips")
    parser.add_argument("--profile-seconds", type=float, default=20.0, help="py-spy phase after the window; 0 skips")
    parser.add_argument("--rpc-timeout", type=float, default=10.0)
    parser.add_argument("--max-in-flight", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="with --use-running: leave the run's movies (and their screenings and bookings) in the catalog",
    )
    parser.add_argument("--log-level", default="INFO", help="the services' CINEMA_LOG_LEVEL (scratch stack)")
    from scripts.bench.sweep import add_arguments

    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    return args


def _grpc_version() -> str:
    import grpc

    return str(grpc.__version__)


def _clean(value: Any) -> Any:
    """NaN -> None, recursively, so report.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class Stop(Exception):
    """SIGTERM: unwind like Ctrl-C so every process is stopped."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Stop


def main(argv: list[str] | None = None) -> int:
    # Starting py-spy forks this process while gRPC's threads run: without this, gRPC's fork
    # handlers log a warning per fork. Read once, when grpc is imported; not passed on.
    previous = os.environ.get("GRPC_ENABLE_FORK_SUPPORT")
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    import grpc  # noqa: F401

    if previous is None:
        del os.environ["GRPC_ENABLE_FORK_SUPPORT"]
    else:
        os.environ["GRPC_ENABLE_FORK_SUPPORT"] = previous
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    from scripts.bench import stack as stack_mod

    seed = args.seed if args.seed is not None else int(time.time())
    started_at = datetime.now(UTC)
    tag = started_at.strftime("%Y%m%dT%H%M%S")
    report_dir = REPORTS / tag
    report_dir.mkdir(parents=True, exist_ok=True)
    scratch = None if args.use_running else stack_mod.make_scratch_dir()
    if scratch is not None:
        os.environ["CINEMA_LOG_LEVEL"] = args.log_level
    stack_mod.prepare_environment(scratch)
    stack = stack_mod.describe(scratch)
    signal.signal(signal.SIGTERM, _on_sigterm)
    print(f"benchmark {tag}: report in {report_dir}", flush=True)
    with contextlib.ExitStack() as cleanup:
        try:
            if scratch is not None:
                cleanup.callback(stack_mod.remove_scratch, scratch)
                cleanup.callback(stack_mod.keep_logs, stack, report_dir)
                cleanup.callback(stack.stop)
                print(f"starting the whole stack in {scratch} (free ports) ...", flush=True)
                stack_mod.start_scratch(stack, report_dir)
            else:
                stack_mod.use_running(stack)
            from scripts.bench.raw import start_echo_server

            echo = start_echo_server(report_dir) if args.raw_seconds > 0 else None
            if echo is not None:
                cleanup.callback(echo.stop)
            result = _run_loop(args, stack, report_dir, tag, seed, started_at, echo.argv[-1] if echo else None)
            # Other work on the machine skews every number: say how busy it was.
            result["run"]["load_average_before"] = [round(x, 2) for x in load_before]
            result["run"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            if result["run"].get("kind") == "sweep":
                from scripts.bench.sweep_report import write_sweep_reports

                write_sweep_reports(result, report_dir)
            else:
                from scripts.bench.report import write_reports

                write_reports(result, samples=[], folder=report_dir, plot=False)
        except (KeyboardInterrupt, Stop, asyncio.CancelledError):
            print("\ninterrupted: stopping everything this run started ...", file=sys.stderr, flush=True)
            return 130
        except Exception as exc:
            print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            print("stopping ...", flush=True)
    if result.get("run", {}).get("kind") == "sweep":
        from scripts.bench.sweep_report import summary_lines

        print("\n" + "\n".join(summary_lines(result)))
        print(f"\nreport: {report_dir / 'report.md'}  (and report.json, sweep.png)")
        return 0
    from scripts.bench.report import summary_table

    print("\n" + "\n".join(summary_table(result)))
    slowest = result.get("slowest_hop") or {}
    print(f"\nslowest hop: {slowest.get('hop')} — {slowest.get('evidence')}")
    print(f"\nreport: {report_dir / 'report.md'}  (and report.json, latency.png)")
    return 0


def _run_loop(
    args: argparse.Namespace,
    stack: Any,
    report_dir: Path,
    tag: str,
    seed: int,
    started_at: datetime,
    echo_port: str | None,
) -> dict[str, Any]:
    coro = _run(args, stack, report_dir, tag, seed, started_at, echo_port)
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    finally:
        signal.signal(signal.SIGTERM, _on_sigterm)  # the loop's handler is gone with the loop


async def _run(
    args: argparse.Namespace,
    stack: Any,
    report_dir: Path,
    tag: str,
    seed: int,
    started_at: datetime,
    echo_port: str | None,
) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does (a Python-level handler would raise inside
    # whichever loop callback runs at that moment, where it could be logged and lost).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    # The hard stop: setup, raw limits, the load phases and the drains, with room to spare.
    budget = 300 + 8 * args.raw_seconds + args.warmup + args.duration + args.profile_seconds + 2 * args.rpc_timeout
    if args.sweep:
        from scripts.bench.sweep import budget_s

        budget += budget_s(args)
    async with asyncio.timeout(budget + 180):  # and the cleanup's time
        try:
            return await _phases(args, stack, report_dir, tag, seed, started_at, echo_port)
        finally:
            if not stack.scratch and not args.keep_data:  # a live catalog: take the run's movies out again
                from scripts.bench.cleanup import remove_run_data_async

                await remove_run_data_async(stack, tag)


async def _phases(
    args: argparse.Namespace,
    stack: Any,
    report_dir: Path,
    tag: str,
    seed: int,
    started_at: datetime,
    echo_port: str | None,
) -> dict[str, Any]:
    from scripts.bench import serverstats
    from scripts.bench.openloop import OpenLoopRunner, Recorder, WeightedChoice, schedule
    from scripts.bench.pgwait import PgActivitySampler
    from scripts.bench.profiling import profile_processes
    from scripts.bench.resources import ResourceSampler
    from scripts.bench.workload import make_workload, parse_weights

    rng = random.Random(seed)
    weights = parse_weights(args.weights)
    prepared = await prepare(args, stack, tag, rng, echo_port)
    addresses, tokens, catalog, raw = prepared.addresses, prepared.tokens, prepared.catalog, prepared.raw
    seed_s, propagate_s = prepared.seed_s, prepared.propagate_s
    if args.sweep:
        from scripts.bench.sweep import run_sweep

        return await run_sweep(args, stack, prepared, weights, rng, report_dir, tag, started_at)

    recorder = Recorder()
    total_s = args.warmup + args.duration + args.profile_seconds
    arrivals = schedule(args.rate, total_s, weights, rng)
    start = time.perf_counter() + 0.5
    window = (start + args.warmup, start + args.warmup + args.duration)
    recorder.window = window
    workload = make_workload(
        args.target,
        stack.ingress,
        catalog,
        tokens,
        addresses,
        rng,
        rpc_timeout_s=args.rpc_timeout,
        in_window=lambda at: window[0] <= at < window[1],
    )
    runner = OpenLoopRunner(workload.operations(), recorder, max_in_flight=args.max_in_flight)
    sampler = ResourceSampler(stack.pids)
    pg_sessions = PgActivitySampler(stack.store_urls["postgres"])
    scrapes: dict[str, serverstats.Scrape] = {}
    profiles: dict[str, Any] = {}
    service_names = set(stack.grpc_ports)

    async def phases() -> None:
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        scrapes["before"] = await serverstats.scrape(stack.metrics_ports)
        sampler.start()
        pg_sessions.start()
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        await pg_sessions.stop()
        await sampler.stop()
        scrapes["after"] = await serverstats.scrape(stack.metrics_ports)
        if args.profile_seconds > 0:
            pids = {n: p for n, p in stack.pids().items() if stack.instance_of(n) in service_names}
            found = await profile_processes(pids, args.profile_seconds, report_dir / "profiles")
            profiles.update({n: p.as_dict() for n, p in found.items()})

    async def progress() -> None:
        last_ok = last_err = last_sent = 0
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            phase = "warm-up" if now < window[0] else "measure" if now < window[1] else "profile"
            ok, err, sent = recorder.ok_count, recorder.error_count, runner.sent
            print(
                f"  {now - start:5.0f} s  {phase:<8} sent {sent - last_sent:4d}/s  ok {ok - last_ok:4d}/s  "
                f"errors {err - last_err:3d}/s  in flight {runner.in_flight:4d}  "
                f"reserved seats {workload.seats_reserved:,}",
                flush=True,
            )
            last_ok, last_err, last_sent = ok, err, sent

    print(
        f"load: {args.rate:.0f}/s open-loop for {args.warmup:.0f} s warm-up + {args.duration:.0f} s measured"
        + (f" + {args.profile_seconds:.0f} s profiled" if args.profile_seconds > 0 else ""),
        flush=True,
    )
    phase_task = asyncio.ensure_future(phases())
    progress_task = asyncio.ensure_future(progress())
    try:
        await runner.run(start, arrivals)
        await phase_task
        cancelled = await runner.drain(args.rpc_timeout + 2)
        await workload.lag.stop()
    finally:
        progress_task.cancel()
        phase_task.cancel()
        await workload.close()
    if cancelled:
        print(f"  {cancelled} calls still in flight at the end were cancelled", flush=True)

    window_s = window[1] - window[0]
    result = build_result(
        recorder=recorder,
        weights=weights,
        window_s=window_s,
        scrapes=scrapes,
        lag_s=workload.lag.lags_s,
        lag_timeouts=workload.lag.timeouts,
        lag_probes_per_s=workload.lag.probes / total_s,
        lag_interval_s=workload.lag.interval_s,
        usage={n: (u.cpu_seconds, u.peak_rss) for n, u in sampler.usage.items()},
        machine_cpu_s=sampler.machine_cpu_seconds,
        pg_sessions=pg_sessions.history.average_sessions(),
        raw=raw,
        profiles=profiles,
    )
    result["run"] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "tag": tag,
        "target": args.target,
        "scratch": stack.scratch,
        "rate": args.rate,
        "warmup_s": args.warmup,
        "window_s": window_s,
        "weights": ",".join(f"{k}={v:g}" for k, v in WeightedChoice(weights).shares().items()),
        "seed": seed,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "grpcio": _grpc_version(),
        "sent": runner.sent,
        "max_in_flight": runner.most_in_flight,
    }
    result["catalog"] = {
        "movies": len(catalog.movie_ids),
        "screenings": len(catalog.screenings),
        "seats": catalog.seats,
        "seed_s": seed_s,
        "propagate_s": propagate_s,
    }
    result["profile_seconds"] = args.profile_seconds
    result["timeline"] = {
        "ok_per_second": dict(sorted(recorder.per_second.items())),
        "errors_per_second": dict(sorted(recorder.errors_per_second.items())),
        "errors_all_phases": dict(recorder.errors_all_phases),
    }
    from scripts.bench.report import write_reports

    cleaned: dict[str, Any] = _clean(result)
    write_reports(cleaned, recorder.samples, report_dir)
    return cleaned


@dataclass
class Prepared:
    """What every kind of run needs before the load: addresses, tokens, the seeded catalog, raw limits."""

    addresses: dict[str, str]
    tokens: Any
    catalog: Any
    raw: dict[str, Any]
    seed_s: float
    propagate_s: float


async def prepare(
    args: argparse.Namespace, stack: Any, tag: str, rng: random.Random, echo_port: str | None
) -> Prepared:
    from scripts.bench.auth import acquire_tokens
    from scripts.bench.catalog import seed_catalog, wait_until_propagated
    from scripts.bench.raw import measure_raw_limits

    addresses = {s: stack.address(s, args.target) for s in stack.grpc_ports}
    print(f"target {args.target}: " + ", ".join(f"{s} {a}" for s, a in addresses.items()), flush=True)
    tokens = await asyncio.to_thread(acquire_tokens, stack.data_dir, stack.store_urls, tag, args.customers)
    print(f"tokens: a manager and {len(tokens.customers)} customers", flush=True)
    t = time.monotonic()
    catalog = await seed_catalog(addresses["movie"], tokens.manager, tag, args.movies, args.screenings, rng)
    seed_s = time.monotonic() - t
    propagate_s = await wait_until_propagated(
        catalog, addresses["reservation"], addresses["viewpage"], tokens.customers[0].metadata
    )
    raw: dict[str, Any] = {}
    if echo_port is not None:
        print(f"raw limits, {args.raw_seconds:.0f} s each:", flush=True)
        limits = await measure_raw_limits(
            f"127.0.0.1:{echo_port}",
            stack.store_urls["postgres"],
            stack.store_urls["redis"],
            stack.store_urls["nats"],
            args.raw_seconds,
        )
        raw = {name: {k: s.as_dict() for k, s in by_c.items()} for name, by_c in limits.items()}
    return Prepared(addresses, tokens, catalog, raw, seed_s, propagate_s)


def build_result(
    *,
    recorder: Any,
    weights: Mapping[str, float],
    window_s: float,
    scrapes: Mapping[str, Any],
    lag_s: list[float],
    lag_timeouts: int,
    lag_probes_per_s: float,
    lag_interval_s: float,
    usage: Mapping[str, tuple[float, int]],
    machine_cpu_s: float = 0.0,
    pg_sessions: Mapping[str, Mapping[str, float]] | None = None,
    raw: Mapping[str, Any],
    profiles: Mapping[str, Any],
) -> dict[str, Any]:
    """Numbers of the finished run (kept apart from the I/O so the arithmetic reads in one place)."""
    from scripts.bench import serverstats
    from scripts.bench.stats import NAN, percentile, ratio, summarize

    operations: dict[str, Any] = {}
    all_latencies: list[float] = []
    all_errors: Counter[str] = Counter()
    for name, weight in weights.items():
        if weight <= 0:
            continue
        stats = recorder.ops.get(name)
        latencies = stats.latencies_s if stats else []
        errors = dict(stats.errors) if stats else {}
        operations[name] = {
            **summarize(latencies, window_s).as_dict(),
            "errors": errors,
            "skipped": stats.skipped if stats else 0,
        }
        all_latencies += latencies
        all_errors.update(errors)
    total: dict[str, Any] = {**summarize(all_latencies, window_s).as_dict(), "errors": dict(all_errors)}

    delta = serverstats.window(scrapes["before"], scrapes["after"]) if len(scrapes) == 2 else {}

    def server(service: str, method: str) -> dict[str, float]:
        h = serverstats.series(delta, service, "grpc_server_handling_seconds", method)
        p50, p99 = (h.quantile(0.5) * 1000, h.quantile(0.99) * 1000) if h.count else (NAN, NAN)
        return {"count": h.count, "mean_ms": h.mean * 1000, "p50_ms": p50, "p99_ms": p99}

    board_lag = serverstats.series(delta, "viewpage", "viewpage_event_lag_seconds", "reservation")
    ordered_lag = sorted(lag_s)
    lag = {
        "client": {
            "p50_ms": percentile(ordered_lag, 50) * 1000,
            "p99_ms": percentile(ordered_lag, 99) * 1000,
            "samples": len(ordered_lag),
            "timeouts": lag_timeouts,
            "probes_per_s": lag_probes_per_s,
            "interval_ms": lag_interval_s * 1000,
        },
        "board": {
            "p50_ms": board_lag.quantile(0.5) * 1000 if board_lag.count else NAN,
            "p99_ms": board_lag.quantile(0.99) * 1000 if board_lag.count else NAN,
            "count": board_lag.count,
        },
    }

    def op(name: str, key: str) -> float:
        return float(operations.get(name, {}).get(key, NAN))

    # Hops of each request path: client-observed, server-side per service, and what is left.
    res = server("reservation", "CreateReservation")
    pay = server("payment", "AuthorizePayment")
    hops: list[dict[str, Any]] = []

    def hop(label: str, process: str, mean_ms: float, count: float, **extra: Any) -> None:
        hops.append({"hop": label, "process": process, "mean_ms": mean_ms, "count": count, **extra})

    if res["count"]:
        client_side = op("reserve", "mean_ms") - res["mean_ms"]
        hop("reserve: client ↔ reservation (wire, queues, client)", LOAD_GENERATOR, client_side, res["count"])
        own = res["mean_ms"] - pay["mean_ms"] if pay["count"] else res["mean_ms"]
        hop(
            "reserve: reservation's own work (replica, seat claim, outbox; PostgreSQL)",
            "reservation",
            own,
            res["count"],
        )
    if pay["count"]:
        label = "reserve: reservation → payment AuthorizePayment (payment server time)"
        hop(label, "payment", pay["mean_ms"], pay["count"], p50_ms=pay["p50_ms"], p99_ms=pay["p99_ms"])
    for label, service, method in SERVER_HOPS:
        s = server(service, method)
        if s["count"]:
            composite = method == "CreateReservation"
            hop(label, service, s["mean_ms"], s["count"], p50_ms=s["p50_ms"], p99_ms=s["p99_ms"], composite=composite)
    if board_lag.count:
        label = "event: reservation event created → applied to the board (outbox, NATS, viewpage)"
        p50, p99 = lag["board"]["p50_ms"], lag["board"]["p99_ms"]
        hop(label, "viewpage", board_lag.mean * 1000, board_lag.count, p50_ms=p50, p99_ms=p99)

    resources = {
        name: {"cpu_s": cpu, "cores": cpu / window_s, "peak_rss_mib": rss / 2**20} for name, (cpu, rss) in usage.items()
    }
    ours = sum(r["cpu_s"] for r in resources.values())
    if machine_cpu_s > 0:
        # Everything else on the machine (other test runs, builds) competes for the same cores.
        other = max(0.0, machine_cpu_s - ours)
        resources["other processes on the machine"] = {"cpu_s": other, "cores": other / window_s, "peak_rss_mib": 0.0}
        resources["whole machine"] = {"cpu_s": machine_cpu_s, "cores": machine_cpu_s / window_s, "peak_rss_mib": 0.0}
    sessions = {db: dict(states) for db, states in (pg_sessions or {}).items()}
    slowest = _slowest(hops, resources, profiles, sessions)

    def raw_value(name: str, concurrency: str, key: str) -> float:
        return float(raw.get(name, {}).get(concurrency, {}).get(key, NAN))

    ratios: dict[str, float] = {}
    for label, (operation, key), (raw_name, concurrency) in RATIOS:
        mine = float(total[key]) if operation == "all" else op(operation, key)
        ratios[label] = ratio(mine, raw_value(raw_name, concurrency, key))
    lag_label = "event-to-view lag p50 ÷ NATS publish p50 (1 in flight)"
    ratios[lag_label] = ratio(percentile(ordered_lag, 50) * 1000, raw_value("nats_publish", "c1", "p50_ms"))
    return {
        "operations": operations,
        "total": total,
        "lag": lag,
        "hops": hops,
        "resources": resources,
        "raw": dict(raw),
        "ratios": ratios,
        "profile": dict(profiles),
        "slowest_hop": slowest,
        "postgres_sessions": sessions,
    }


def _slowest(
    hops: list[dict[str, Any]],
    resources: Mapping[str, Any],
    profiles: Mapping[str, Any],
    pg_sessions: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any] | None:
    """The hop with the largest mean time (composite hops, which contain others, left out), with
    the CPU its process burnt and what its profile spends the time on."""
    candidates = [h for h in hops if not h.get("composite") and h.get("mean_ms") == h.get("mean_ms")]
    if not candidates:
        return None
    hop = max(candidates, key=lambda h: float(h["mean_ms"]))
    process = str(hop["process"])
    evidence = [f"{hop['mean_ms']:.1f} ms mean per call"]
    if process in resources:
        evidence.append(f"{process} kept {resources[process]['cores']:.2f} cores busy in the window")
    store = STORE_OF.get(process)
    if store is not None and store in resources:
        evidence.append(f"its store ({store}) {resources[store]['cores']:.2f} cores")
    if "whole machine" in resources:
        machine, other = resources["whole machine"]["cores"], resources["other processes on the machine"]["cores"]
        evidence.append(f"the machine {machine:.2f} of {os.cpu_count()} cores busy, {other:.2f} of them by other work")
    prof = profiles.get(process)
    if prof and not prof.get("error") and prof.get("samples"):
        total = prof["samples"]
        packages = ", ".join(f"{pkg} {n / total:.0%}" for pkg, n in prof["self_packages"][:4])
        functions = "; ".join(f"{func} {n / total:.0%}" for func, n in prof["self_functions"][:3])
        evidence.append(f"py-spy: GIL held {prof['busy_share']:.0%} of the time; self time by package: {packages}")
        evidence.append(f"top functions: {functions}")
    states = (pg_sessions or {}).get(process)
    if states:
        shown = ", ".join(f"{state} {n:.2f}" for state, n in sorted(states.items(), key=lambda kv: -kv[1])[:4])
        evidence.append(f"its PostgreSQL sessions on average: {shown}")
    return {"hop": hop["hop"], "process": process, "mean_ms": hop["mean_ms"], "evidence": "; ".join(evidence)}
