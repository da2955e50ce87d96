"""The sweep's outputs: the tables (terminal and report.md), report.json and sweep.png."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.bench.report import RAW_LABELS


def _n(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.{digits}f}"


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    capacity = result.get("capacity_per_s")
    if capacity is not None:
        lines += [
            f"capacity: **{_n(capacity)} operations/s** (target {result['run']['target']}, default mix; "
            "SLO: every operation's p99 <= 250 ms, errors <= 0.1 %)",
            "",
        ]
    lines += [
        "| step | offered /s | ok /s | p99 all ms | reserve p50 / p99 ms | errors | board lag p99 ms "
        "| cores busy (stack) | SLO |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for step in result.get("steps", []):
        reserve = step["operations"].get("reserve", {})
        errors = ", ".join(f"{k} {v}" for k, v in sorted(step["total"]["errors"].items())) or "0"
        stack_cores = sum(
            r["cores"]
            for name, r in step["resources"].items()
            if name not in ("other processes on the machine", "whole machine") and not name.startswith("load generator")
        )
        lines.append(
            f"| {step['label']} | {_n(step['rate'])} | {_n(step['total']['rate_per_s'])} | "
            f"{_n(step['total']['p99_ms'])} | "
            f"{_n(reserve.get('p50_ms'))} / {_n(reserve.get('p99_ms'))} | {errors} | "
            f"{_n(step['lag']['board']['p99_ms'])} | {stack_cores:.2f} | "
            f"{'held' if not step['breaches'] else 'broke: ' + '; '.join(step['breaches'])} |"
        )
    cost = result.get("cost")
    if cost:
        mix, book = cost["mix_cpu_ms_per_op"], cost["reserve_cpu_ms_per_op"]
        lines += [
            "",
            f"CPU milliseconds per operation at {_n(cost['rate'])}/s (mix) and per reservation (reservations alone; "
            "its events, mail and board update included):",
            "",
            "| process | ms per op (mix) | ms per reservation |",
            "|---|---:|---:|",
        ]
        names = sorted(set(mix) | set(book), key=lambda n: (n.startswith("whole"), -mix.get(n, 0.0)))
        for name in names:
            lines.append(f"| {name} | {_n(mix.get(name), 2)} | {_n(book.get(name), 2)} |")
    idle = result.get("idle")
    if idle:
        lines += [
            "",
            f"Idle ({_n(idle['seconds'])} s, no load): the stack {idle['stack']['cores']:.3f} cores, "
            f"RSS {idle['stack']['rss_mib']:,.0f} MiB",
            "",
            "| process | idle cores | RSS MiB |",
            "|---|---:|---:|",
        ]
        for name, p in sorted(idle["processes"].items(), key=lambda kv: -kv[1]["cores"]):
            lines.append(f"| {name} | {p['cores']:.3f} | {p['rss_mib']:,.0f} |")
    over = result.get("overload")
    if over:
        refusals = over["refusals"]
        lines += [
            "",
            f"Overload ({over['factor']:g} x capacity, {_n(over['offered_per_s'])}/s offered): goodput "
            f"{_n(over['goodput_per_s'])}/s within the SLO ({over['goodput_share_of_capacity']:.0%} of capacity); "
            f"{refusals['count']} refused (p50 {_n(refusals['p50_ms'])} ms, p99 {_n(refusals['p99_ms'])} ms); "
            f"errors {over['errors'] or 0}; board lag p99 {_n(over['board_lag_p99_ms'])} ms",
        ]
    sellout = result.get("sellout")
    if sellout:
        race = sellout["race"]
        checks = ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in race.get("checks", {}).items())
        lines += [
            "",
            f"Sellout while the mix runs at {_n(sellout['rate'])}/s (70 % of capacity): {race['buyers']} buyers, "
            f"{race['seats']} seats: {race['seats_sold']} sold in {_n(race.get('sold_out_s'))} s, "
            f"{race['sold_twice']} sold twice, {race['buyers_saw_unavailable']} buyers saw UNAVAILABLE; {checks}",
        ]
    raw = result.get("raw") or {}
    if raw:
        lines += ["", "| raw limit (same run) | 64 in flight: ops/s | p50 ms |", "|---|---:|---:|"]
        for name, by_c in raw.items():
            c64, c1 = by_c["c64"], by_c["c1"]
            lines.append(f"| {RAW_LABELS.get(name, name)} | {_n(c64['rate_per_s'])} | {_n(c1['p50_ms'], 2)} |")
        echo = raw.get("grpc_echo", {}).get("c64", {}).get("rate_per_s")
        if capacity and echo:
            lines.append(f"\ncapacity ÷ raw echo (64 in flight): {capacity / echo:.3f}")
    return lines


def write_plot(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in result.get("steps", [])]
    if not steps:
        return
    offered = [s["rate"] for s in steps]
    served = [s["total"]["rate_per_s"] for s in steps]
    p99 = [s["total"]["p99_ms"] for s in steps]
    reserve = [s["operations"].get("reserve", {}).get("p99_ms", math.nan) for s in steps]
    fig, (rate_ax, lat_ax) = plt.subplots(1, 2, figsize=(13, 5))
    rate_ax.plot(offered, served, "o-", label="answered ok /s")
    rate_ax.plot(offered, offered, ":", color="grey", label="offered")
    if result.get("capacity_per_s"):
        rate_ax.axvline(result["capacity_per_s"], color="green", alpha=0.5, label="capacity")
    rate_ax.set(xlabel="offered operations/s", ylabel="operations/s")
    rate_ax.legend()
    lat_ax.plot(offered, p99, "o-", label="p99, all operations")
    lat_ax.plot(offered, reserve, "s-", label="p99, reserve")
    lat_ax.axhline(250, color="red", alpha=0.5, label="SLO 250 ms")
    lat_ax.set(xlabel="offered operations/s", ylabel="ms", yscale="log")
    lat_ax.legend()
    fig.suptitle(f"capacity sweep ({result['run']['target']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_sweep_reports(result: Mapping[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(result, indent=2, default=str))
    run = result["run"]
    text = [f"# Capacity sweep {run['started_at']} ({run['target']})", "", *summary_lines(result), ""]
    (folder / "report.md").write_text("\n".join(text))
    write_plot(result, folder / "sweep.png")
