"""Idle cost of the stack: CPU (cores) and RSS (MiB) of every process over a window of no load.

`measure_idle(pids, seconds)` is what the benchmark calls (with its stack's `pids`); it reuses
the benchmark's sampler (scripts.bench.resources): each component counts with its descendants
(PostgreSQL's backends, the supervisor's children), and a restarted process is followed by its
new pid. `python -m scripts.bench.idle --use-running [--seconds 20]` prints the table for the
`make up` stack (it sends no request: whatever else talks to the stack meanwhile is counted).

The target (issue 14): the whole stack at most 0.05 of a core with nothing happening, also with
ten times the catalog.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from scripts.bench.resources import LOAD_GENERATOR, ResourceSampler

MIB = 1024 * 1024
IDLE_TARGET_CORES = 0.05


async def measure_idle(pids: Callable[[], Mapping[str, int]], seconds: float = 20.0) -> dict[str, Any]:
    """CPU in cores (CPU seconds / wall seconds) and peak RSS in MiB of each process `pids()` names,
    over `seconds` in which the caller sends nothing; plus the totals:

        {"seconds": 20.0, "processes": {"ferretdb": {"cpu_cores": 0.004, "rss_mib": 61.2}, ...},
         "total": {"cpu_cores": 0.021, "rss_mib": 1432.5}}
    """
    sampler = ResourceSampler(pids, interval_s=max(0.5, min(5.0, seconds / 4)))
    started = time.monotonic()
    sampler.start()
    await asyncio.sleep(seconds)
    await sampler.stop()
    elapsed = max(time.monotonic() - started, 1e-9)
    processes = {
        name: {"cpu_cores": usage.cpu_seconds / elapsed, "rss_mib": usage.peak_rss / MIB}
        for name, usage in sorted(sampler.usage.items())
        if name != LOAD_GENERATOR
    }
    total = {
        "cpu_cores": sum(p["cpu_cores"] for p in processes.values()),
        "rss_mib": sum(p["rss_mib"] for p in processes.values()),
    }
    return {"seconds": elapsed, "processes": processes, "total": total}


def format_table(result: Mapping[str, Any]) -> str:
    rows = sorted(result["processes"].items(), key=lambda item: -item[1]["cpu_cores"])
    width = max([len("process"), *(len(name) for name, _ in rows)])
    lines = [f"idle over {result['seconds']:.1f} s", f"{'process':<{width}}  {'cores':>7}  {'RSS MiB':>8}"]
    lines += [f"{name:<{width}}  {p['cpu_cores']:7.4f}  {p['rss_mib']:8.1f}" for name, p in rows]
    total = result["total"]
    lines.append(f"{'total':<{width}}  {total['cpu_cores']:7.4f}  {total['rss_mib']:8.1f}")
    verdict = "within" if total["cpu_cores"] <= IDLE_TARGET_CORES else "ABOVE"
    lines.append(f"({verdict} the idle target of {IDLE_TARGET_CORES} core)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.idle", description=__doc__.splitlines()[0])
    parser.add_argument("--use-running", action="store_true", required=True, help="measure the `make up` stack")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the window (default 20)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)

    from scripts.bench.stack import describe, use_running

    stack = describe(None)
    try:
        use_running(stack)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = asyncio.run(measure_idle(stack.pids, args.seconds))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
