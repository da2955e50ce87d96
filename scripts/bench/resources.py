"""CPU seconds and peak RSS per process of the stack (and of the load generator itself), by pid.

The pids come from the supervisor's state file, re-read at every sample (a restarted process
has a new pid). Each component counts with its descendants: PostgreSQL does its work in one
backend process per connection. RSS is summed over the tree, so PostgreSQL's shared buffers
count once per backend that touched them: an upper bound. Sampling reads /proc, so it runs in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

from scripts.bench.stats import cpu_seconds_between

LOAD_GENERATOR = "load generator (this process)"


@dataclass
class ProcessUsage:
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0

    @property
    def cpu_seconds(self) -> float:
        return cpu_seconds_between(self.cpu_first, self.cpu_last)


def _tree_sample(pid: int, descendants: bool = True) -> tuple[dict[int, float], int]:
    """CPU seconds per pid and the summed RSS of a process and (unless told not to) its descendants."""
    cpu: dict[int, float] = {}
    rss = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if descendants else [root]
    except psutil.Error:
        return cpu, rss
    for proc in procs:
        with contextlib.suppress(psutil.Error), proc.oneshot():
            times = proc.cpu_times()
            cpu[proc.pid] = times.user + times.system
            rss += proc.memory_info().rss
    return cpu, rss


@dataclass
class ResourceSampler:
    """Samples every `interval_s` between `start()` and `stop()`."""

    pids: Callable[[], Mapping[str, int]]
    interval_s: float = 1.0
    usage: dict[str, ProcessUsage] = field(default_factory=dict)
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    _task: asyncio.Task[None] | None = None
    _started_first: set[str] = field(default_factory=set)
    machine_first: float | None = None  # busy CPU seconds of the whole machine (all cores)
    machine_last: float | None = None

    @property
    def machine_cpu_seconds(self) -> float:
        """CPU seconds every process of the machine spent between the first and last sample: what
        is not ours in it is other work competing for the same cores."""
        if self.machine_first is None or self.machine_last is None:
            return 0.0
        return self.machine_last - self.machine_first

    def _sample(self) -> None:
        times = psutil.cpu_times()
        busy = times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
        if self.machine_first is None:
            self.machine_first = busy
        self.machine_last = busy
        targets = {**self.pids(), LOAD_GENERATOR: os.getpid()}
        for name, pid in targets.items():
            # The load generator's children are the stack itself (a scratch stack's supervisor).
            cpu, rss = _tree_sample(pid, descendants=name != LOAD_GENERATOR)
            if not cpu:
                continue
            usage = self.usage.setdefault(name, ProcessUsage())
            if name not in self._started_first:
                self._started_first.add(name)
                usage.cpu_first = dict(cpu)
            usage.cpu_last.update(cpu)
            usage.peak_rss = max(usage.peak_rss, rss)

    async def _loop(self) -> None:
        while True:
            await asyncio.to_thread(self._sample)
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._sample)  # the final CPU counters, at the end of the window
