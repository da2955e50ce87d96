"""The report's arithmetic: percentiles, latency summaries, Prometheus histogram quantiles, ratios.

Pure functions over plain numbers (no I/O, no clock), so the numbers the benchmark prints are
tested on their own in tests/unit/bench.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

NAN = float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of values sorted ascending, interpolated linearly between the
    two nearest ranks (NumPy's default method); NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    n = len(sorted_values)
    if n == 0:
        return NAN
    if n == 1:
        return float(sorted_values[0])
    rank = q / 100.0 * (n - 1)
    low = math.floor(rank)
    high = min(low + 1, n - 1)
    fraction = rank - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction)


@dataclass(frozen=True)
class LatencySummary:
    """Latencies of successful calls, in milliseconds, and the rate over the window."""

    count: int
    rate_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def summarize(latencies_s: Sequence[float], window_s: float) -> LatencySummary:
    """Summary of latencies given in seconds; `window_s` is the time the rate is measured over."""
    if window_s <= 0:
        raise ValueError("the measurement window must be positive")
    ordered = sorted(latencies_s)
    n = len(ordered)
    return LatencySummary(
        count=n,
        rate_per_s=n / window_s,
        p50_ms=percentile(ordered, 50) * 1000,
        p95_ms=percentile(ordered, 95) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        max_ms=ordered[-1] * 1000 if n else NAN,
        mean_ms=sum(ordered) / n * 1000 if n else NAN,
    )


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when either is missing (NaN) or the denominator is zero."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return NAN
    return numerator / denominator


# -- Prometheus histograms ----------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """A cumulative Prometheus histogram: `buckets` are (upper bound, cumulative count) ascending,
    the last bound being +Inf; `total` is the sum of the observed values."""

    buckets: tuple[tuple[float, float], ...]
    total: float

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else NAN

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed between `earlier` and this scrape (counters only grow, barring a
        restart of the process, where the earlier scrape no longer applies)."""
        if not earlier.buckets:
            return self
        before = dict(earlier.buckets)
        if any(count < before.get(le, 0.0) for le, count in self.buckets):
            return self  # the process restarted in between: its counters began again from zero
        return Histogram(
            tuple((le, count - before.get(le, 0.0)) for le, count in self.buckets), self.total - earlier.total
        )

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1) estimated as PromQL's histogram_quantile does: linear
        interpolation inside the bucket holding the rank; the highest finite bound when the
        rank falls in the +Inf bucket; NaN for an empty histogram."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is outside 0..1")
        total = self.count
        if total <= 0:
            return NAN
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for upper_bound, cumulative in self.buckets:
            if cumulative >= rank and cumulative > lower_count:
                if math.isinf(upper_bound):
                    return lower_bound
                in_bucket = cumulative - lower_count
                return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / in_bucket
            lower_bound, lower_count = upper_bound, cumulative
        return lower_bound


def merge_histograms(histograms: Sequence[Histogram]) -> Histogram:
    """Sum histograms with the same bucket bounds (e.g. one series per label value)."""
    if not histograms:
        return Histogram((), 0.0)
    bounds = [le for le, _ in histograms[0].buckets]
    for h in histograms[1:]:
        if [le for le, _ in h.buckets] != bounds:
            raise ValueError("histograms with different bucket bounds cannot be merged")
    summed = tuple((le, sum(h.buckets[i][1] for h in histograms)) for i, le in enumerate(bounds))
    return Histogram(summed, sum(h.total for h in histograms))


# -- Resource usage -----------------------------------------------------------------------


def cpu_seconds_between(first: Mapping[int, float], last: Mapping[int, float]) -> float:
    """CPU seconds a set of processes spent between two samples, keyed by pid: a pid seen only in
    the later sample started in between and counts from zero; one gone by then counts until
    the last time it was seen (which the caller keeps in `last`)."""
    return sum(max(0.0, cpu - first.get(pid, 0.0)) for pid, cpu in last.items())
