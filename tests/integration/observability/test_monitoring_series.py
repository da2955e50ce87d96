"""The chart's alert rules and Grafana dashboard read only series that the services really serve:
every metric name in their PromQL is found in a real scrape of the six services' `/metrics` after
a full run (or is one of the chart's recording rules)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.observability.system import BookingRun, ObservedSystem
from tests.support.monitoring import (
    CHART,
    dashboard_queries,
    dashboards,
    exposed_names,
    helm_env,
    metric_names,
    recorded_names,
    render,
    rule_queries,
)

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


async def test_every_metric_the_chart_reads_is_served(
    run: BookingRun, observed_system: ObservedSystem, tmp_path: Path
) -> None:
    docs = render(helm_env(tmp_path), "-f", str(CHART / "ci" / "monitoring-values.yaml"))
    queries = list(rule_queries(docs))
    for dashboard in dashboards(docs).values():
        queries += dashboard_queries(dashboard)
    served: set[str] = set()
    sampled: set[str] = set()
    for port in observed_system.metrics_ports.values():
        text = await asyncio.to_thread(scrape, port)
        served |= exposed_names(text)
        sampled |= {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    known = served | recorded_names(docs)
    unknown = [f"{q.where}: {name}" for q in queries for name in sorted(metric_names(q.expr) - known)]
    assert not unknown, "metrics no service serves:\n" + "\n".join(unknown)
    # the run made these: samples, not only declarations
    assert {"grpc_server_handling_seconds_bucket", "cinema_seats_sold_total", "cinema_payments_total"} <= sampled
