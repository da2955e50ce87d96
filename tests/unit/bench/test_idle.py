"""scripts.bench.idle on real processes: a sleeping child costs next to no CPU, a spinning one
costs a good share of a core; RSS is reported; the totals add up; the table prints."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from scripts.bench.idle import format_table, measure_idle


@pytest.fixture
def children() -> Iterator[dict[str, int]]:
    sleeping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    # Spins for a bounded time even if the test dies; nice 10, as the machine is shared.
    spinning = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"]
    )
    try:
        yield {"sleeping": sleeping.pid, "spinning": spinning.pid}
    finally:
        for child in (sleeping, spinning):
            child.kill()
            child.wait()


async def test_measure_idle_reports_cores_and_rss_per_process(children: dict[str, int]) -> None:
    result = await measure_idle(lambda: children, 2.0)
    sleeping, spinning = result["processes"]["sleeping"], result["processes"]["spinning"]
    assert sleeping["cpu_cores"] < 0.05
    # Generous: a busy machine may leave the spinner only part of a core, never none of it.
    assert spinning["cpu_cores"] > 0.05
    assert sleeping["rss_mib"] > 1 and spinning["rss_mib"] > 1
    assert result["total"]["cpu_cores"] == pytest.approx(sleeping["cpu_cores"] + spinning["cpu_cores"])
    assert result["seconds"] >= 2.0
    table = format_table(result)
    assert "spinning" in table.splitlines()[2]  # the costliest first
    assert table.splitlines()[-2].startswith("total")
