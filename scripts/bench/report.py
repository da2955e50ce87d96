"""The benchmark's outputs: the summary table on the terminal, report.md, report.json, latency.png.

Everything here renders a finished result (a plain dict, the same one written as JSON); the
numbers are computed by the run (scripts/bench/run.py) with scripts/bench/stats.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RAW_LABELS = {
    "grpc_echo": "grpc.aio unary echo",
    "pg_insert": "asyncpg one-row INSERT tx (pool 8)",
    "redis_get": "redis.asyncio GET",
    "nats_publish": "JetStream publish (acked)",
}


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(errors.items())) or "0"


def summary_table(result: Mapping[str, Any]) -> list[str]:
    """The per-operation table, then the raw limits, lag and ratios: what goes in the README."""
    lines = [
        "| operation | ok/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, op in result["operations"].items():
        lines.append(
            f"| {name} | {_num(op['rate_per_s'])} | {_num(op['p50_ms'])} | {_num(op['p95_ms'])} | "
            f"{_num(op['p99_ms'])} | {_num(op['max_ms'])} | {_errors(op['errors'])} |"
        )
    total = result["total"]
    lines.append(
        f"| **all** | **{_num(total['rate_per_s'])}** | {_num(total['p50_ms'])} | {_num(total['p95_ms'])} | "
        f"{_num(total['p99_ms'])} | {_num(total['max_ms'])} | {_errors(total['errors'])} |"
    )
    lag = result["lag"]
    lines += [
        "",
        "| event-to-view lag | p50 ms | p99 ms | samples |",
        "|---|---:|---:|---:|",
        f"| reservation confirmed → shown CONFIRMED on the board (client poll, {lag['client']['interval_ms']:.0f} ms) "
        f"| {_num(lag['client']['p50_ms'])} | {_num(lag['client']['p99_ms'])} | {lag['client']['samples']} |",
        f"| event created → applied to the board (viewpage histogram, reservation events) "
        f"| {_num(lag['board']['p50_ms'])} | {_num(lag['board']['p99_ms'])} | {lag['board']['count']:.0f} |",
        "",
        "| raw limit (same run, same servers) | 1 in flight: ops/s | p50 ms | 64 in flight: ops/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, raw in result["raw"].items():
        c1, c64 = raw["c1"], raw["c64"]
        lines.append(
            f"| {RAW_LABELS.get(name, name)} | {_num(c1['rate_per_s'])} | {_num(c1['p50_ms'], 2)} | "
            f"{_num(c64['rate_per_s'])} | {_num(c64['p50_ms'], 2)} | {_num(c64['p99_ms'], 2)} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    for label, value in result["ratios"].items():
        small = value is not None and not math.isnan(value) and value < 10
        lines.append(f"| {label} | {_num(value, 3) if small else _num(value)} |")
    return lines


def resources_table(resources: Mapping[str, Any]) -> list[str]:
    lines = ["| process | CPU s | cores busy | peak RSS MiB |", "|---|---:|---:|---:|"]
    machine = ("other processes on the machine", "whole machine")
    ordered = sorted((kv for kv in resources.items() if kv[0] not in machine), key=lambda kv: -kv[1]["cpu_s"])
    ordered += [(name, resources[name]) for name in machine if name in resources]
    for name, r in ordered:
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] else "-"
        lines.append(f"| {name} | {r['cpu_s']:.1f} | {r['cores']:.2f} | {rss} |")
    return lines


def sessions_table(sessions: Mapping[str, Mapping[str, float]]) -> list[str]:
    lines = ["| database | sessions by state (average) |", "|---|---|"]
    for database, states in sorted(sessions.items()):
        shown = ", ".join(f"{state} {n:.2f}" for state, n in sorted(states.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {database} | {shown} |")
    return lines


def hops_table(hops: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| hop | mean ms | p50 ms | p99 ms | calls |", "|---|---:|---:|---:|---:|"]
    for hop in hops:
        lines.append(
            f"| {hop['hop']} | {_num(hop['mean_ms'], 2)} | {_num(hop.get('p50_ms'), 2)} | "
            f"{_num(hop.get('p99_ms'), 2)} | {hop.get('count', 0):.0f} |"
        )
    return lines


def profile_lines(profiles: Mapping[str, Any], focus: str | None) -> list[str]:
    lines = ["| process | samples | GIL held (share of time) | top packages (self samples) |", "|---|---:|---:|---|"]
    for name, p in sorted(profiles.items(), key=lambda kv: -kv[1]["samples"]):
        if p.get("error"):
            lines.append(f"| {name} | - | - | {p['error']} |")
            continue
        total = max(p["samples"], 1)
        packages = ", ".join(f"{pkg} {n / total:.0%}" for pkg, n in p["self_packages"][:6])
        lines.append(f"| {name} | {p['samples']} | {p['busy_share']:.0%} | {packages} |")
    if focus and focus in profiles and not profiles[focus].get("error"):
        p = profiles[focus]
        total = max(p["samples"], 1)
        lines += ["", f"Top functions of {focus} (self samples):", ""]
        lines += [f"- {n / total:5.1%}  {func}" for func, n in p["self_functions"][:12]]
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    run = result["run"]
    catalog = result["catalog"]
    slowest = result.get("slowest_hop") or {}
    parts = [
        f"# Benchmark {run['started_at']}",
        "",
        f"Target `{run['target']}`, {'scratch stack' if run['scratch'] else 'running stack'}; open-loop Poisson "
        f"arrivals at {run['rate']:.0f}/s for {run['window_s']:.0f} s (after {run['warmup_s']:.0f} s warm-up); "
        f"weights {run['weights']}; {run['cpus']} cores; grpcio {run['grpcio']}; seed {run['seed']}.",
        f"Machine load average (1, 5, 15 min) before: {run.get('load_average_before', '?')}, "
        f"after: {run.get('load_average_after', '?')}.",
        f"Catalog: {catalog['movies']} movies, {catalog['screenings']} screenings, {catalog['seats']:,} seats, "
        f"seeded in {catalog['seed_s']:.1f} s, propagated in {catalog['propagate_s']:.1f} s.",
        f"Load generator: sent {run['sent']:,}, most in flight {run['max_in_flight']}, "
        f"lag probes {result['lag']['client']['probes_per_s']:.0f}/s.",
        "",
        "## Summary",
        "",
        *summary_table(result),
        "",
        "## Hops (server-side histograms of the services, same window)",
        "",
        *hops_table(result["hops"]),
        "",
        f"Slowest hop: **{slowest.get('hop', '-')}** — {slowest.get('evidence', '')}",
        "",
        "## CPU and memory per process (measured window)",
        "",
        *resources_table(result["resources"]),
        "",
        "## PostgreSQL sessions per database (average over the window, sampled from pg_stat_activity)",
        "",
        *sessions_table(result.get("postgres_sessions", {})),
        "",
        f"## Profile ({result.get('profile_seconds', 0):.0f} s of py-spy after the window, same load)",
        "",
        *profile_lines(result.get("profile", {}), slowest.get("process")),
        "",
    ]
    return "\n".join(parts)


def write_plot(samples: Sequence[tuple[str, float, float]], path: Path) -> None:
    """Latency over time per operation (scatter, log scale) and the latency CDF per operation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_op: dict[str, list[tuple[float, float]]] = {}
    for op, at, latency in samples:
        by_op.setdefault(op, []).append((at, latency * 1000))
    fig, (over_time, cdf) = plt.subplots(1, 2, figsize=(14, 5.5))
    for op, points in sorted(by_op.items()):
        xs, ys = zip(*points, strict=True)
        over_time.scatter(xs, ys, s=3, alpha=0.5, label=op)
        ordered = sorted(ys)
        n = len(ordered)
        cdf.plot(ordered, [(i + 1) / n for i in range(n)], label=op)
    over_time.set(yscale="log", xlabel="intended send time (s since start)", ylabel="latency (ms)")
    over_time.set_title("latency from the intended send time")
    over_time.legend(markerscale=4, fontsize=8)
    cdf.set(xscale="log", xlabel="latency (ms)", ylabel="fraction of calls")
    cdf.set_title("latency distribution")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(
    result: Mapping[str, Any], samples: Sequence[tuple[str, float, float]], folder: Path, plot: bool = True
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(result, indent=2, default=str))
    (folder / "report.md").write_text(markdown(result))
    if plot and samples:
        write_plot(samples, folder / "latency.png")
