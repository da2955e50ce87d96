"""What the services measured themselves: their Prometheus histograms, scraped before and after the window.

The difference of two scrapes is what happened in the window. `grpc_server_handling_seconds`
per method gives each hop's server-side time (e.g. CreateReservation on reservation includes
its synchronous Authorize on payment, which payment reports on its own), and the viewpage's
`viewpage_event_lag_seconds` gives the event-to-board lag as the board itself sees it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scripts.bench.stats import Histogram, merge_histograms

HISTOGRAMS = ("grpc_server_handling_seconds", "viewpage_event_lag_seconds", "cinema_event_lag_seconds")

# (service, histogram, label that names the series) -> Histogram
Scrape = dict[tuple[str, str, str], Histogram]


def parse_histograms(text: str, service: str) -> Scrape:
    """The histograms of one /metrics page, keyed by (service, metric, series label)."""
    raw: dict[tuple[str, str, str], dict[str, object]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in HISTOGRAMS or family.type != "histogram":
            continue
        for sample in family.samples:
            labels = dict(sample.labels)
            bound = labels.pop("le", None)
            series = labels.get("grpc_method") or labels.get("context") or labels.get("consumer") or ""
            entry = raw.setdefault((service, family.name, series), {"buckets": {}, "sum": 0.0})
            if sample.name.endswith("_bucket") and bound is not None:
                buckets = entry["buckets"]
                assert isinstance(buckets, dict)
                le = math.inf if bound in ("+Inf", "Inf") else float(bound)
                buckets[le] = buckets.get(le, 0.0) + float(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum"] = float(entry["sum"]) + float(sample.value)  # type: ignore[arg-type]
    out: Scrape = {}
    for key, entry in raw.items():
        buckets = entry["buckets"]
        assert isinstance(buckets, dict)
        out[key] = Histogram(tuple(sorted(buckets.items())), float(entry["sum"]))  # type: ignore[arg-type]
    return out


async def scrape(metrics_ports: Mapping[str, Sequence[int]]) -> Scrape:
    """Every service's histograms, its instances added up; an instance that does not answer is left out."""
    async with httpx.AsyncClient(timeout=5) as client:

        async def one(service: str, port: int) -> Scrape:
            try:
                reply = await client.get(f"http://127.0.0.1:{port}/metrics")
                reply.raise_for_status()
            except httpx.HTTPError:
                return {}
            return parse_histograms(reply.text, service)

        pages = await asyncio.gather(*(one(s, p) for s, ports in metrics_ports.items() for p in ports))
    merged: Scrape = {}
    for page in pages:
        for key, histogram in page.items():
            merged[key] = histogram if key not in merged else merge_histograms([merged[key], histogram])
    return merged


def window(before: Scrape, after: Scrape) -> Scrape:
    """What was observed between the two scrapes (series with no observation are dropped)."""
    out: Scrape = {}
    for key, later in after.items():
        delta = later.minus(before.get(key, Histogram((), 0.0)))
        if delta.count > 0:
            out[key] = delta
    return out


def series(scrape_: Scrape, service: str, metric: str, name: str | None = None) -> Histogram:
    """One series, or all series of a metric of a service merged when `name` is None."""
    if name is not None:
        return scrape_.get((service, metric, name), Histogram((), 0.0))
    return merge_histograms([h for (s, m, _n), h in scrape_.items() if s == service and m == metric])
