"""The benchmark's arithmetic: percentiles, summaries, ratios, Prometheus histogram quantiles, CPU deltas."""

from __future__ import annotations

import math
import random

import pytest

from scripts.bench.stats import (
    Histogram,
    cpu_seconds_between,
    merge_histograms,
    percentile,
    ratio,
    summarize,
)


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_percentile_matches_a_sorted_sample_rank() -> None:
    rng = random.Random(3)
    values = sorted(rng.expovariate(1.0) for _ in range(1001))
    # with n - 1 = 1000 the ranks fall on whole indices: no interpolation
    assert percentile(values, 50) == values[500]
    assert percentile(values, 99) == values[990]


def test_summarize_reports_milliseconds_and_the_rate_over_the_window() -> None:
    summary = summarize([0.010, 0.030, 0.020, 0.040], window_s=2.0)
    assert summary.count == 4
    assert summary.rate_per_s == 2.0
    assert summary.p50_ms == pytest.approx(25.0)
    assert summary.max_ms == pytest.approx(40.0)
    assert summary.mean_ms == pytest.approx(25.0)


def test_summarize_without_calls_has_a_zero_rate_and_no_latency() -> None:
    summary = summarize([], window_s=10)
    assert summary.count == 0 and summary.rate_per_s == 0
    assert math.isnan(summary.p99_ms) and math.isnan(summary.max_ms)
    with pytest.raises(ValueError):
        summarize([0.1], window_s=0)


def test_ratio_is_nan_when_a_side_is_missing_or_zero() -> None:
    assert ratio(50, 2000) == 0.025
    assert math.isnan(ratio(1, 0))
    assert math.isnan(ratio(float("nan"), 1))
    assert math.isnan(ratio(1, float("nan")))


def _hist(*counts: float, total: float = 0.0) -> Histogram:
    bounds = (0.001, 0.01, 0.1, math.inf)
    return Histogram(tuple(zip(bounds, counts, strict=True)), total)


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    # 10 observations: 0 below 1 ms, 10 in (1 ms, 10 ms]
    h = _hist(0, 10, 10, 10, total=0.05)
    assert h.count == 10
    assert h.mean == pytest.approx(0.005)
    assert h.quantile(0.5) == pytest.approx(0.001 + 0.009 * 0.5)
    assert h.quantile(1.0) == pytest.approx(0.01)


def test_histogram_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    h = _hist(0, 0, 1, 10)
    assert h.quantile(0.99) == 0.1
    assert math.isnan(_hist(0, 0, 0, 0).quantile(0.5))


def test_histogram_difference_is_the_window_and_a_restart_resets_it() -> None:
    before = _hist(1, 2, 3, 3, total=0.2)
    after = _hist(1, 5, 9, 10, total=1.2)
    window = after.minus(before)
    assert window.buckets == ((0.001, 0), (0.01, 3), (0.1, 6), (math.inf, 7))
    assert window.total == pytest.approx(1.0)
    restarted = _hist(0, 1, 1, 1, total=0.01)
    assert restarted.minus(before) == restarted
    assert after.minus(Histogram((), 0.0)) == after


def test_merge_histograms_adds_series_with_the_same_bounds() -> None:
    merged = merge_histograms([_hist(1, 1, 1, 1, total=0.001), _hist(0, 2, 2, 2, total=0.01)])
    assert merged.buckets[-1] == (math.inf, 3)
    assert merged.total == pytest.approx(0.011)
    with pytest.raises(ValueError):
        merge_histograms([_hist(1, 1, 1, 1), Histogram(((1.0, 1),), 0)])
    assert merge_histograms([]).count == 0


def test_cpu_seconds_count_new_processes_from_zero() -> None:
    first = {10: 5.0, 11: 1.0}
    last = {10: 7.5, 11: 1.0, 12: 0.25}  # 12 started in between (a new PostgreSQL backend)
    assert cpu_seconds_between(first, last) == pytest.approx(2.75)


def test_session_history_averages_states_per_database() -> None:
    from scripts.bench.pgwait import SessionHistory

    history = SessionHistory()
    history.add([("reservation", "active", "IO:WALSync"), ("reservation", "idle in transaction", "Client:ClientRead")])
    history.add([("reservation", "idle", "Client:ClientRead"), ("payment", "active", "CPU")])
    assert history.average_sessions() == {
        "payment": {"active (CPU)": 0.5},
        "reservation": {"active (IO:WALSync)": 0.5, "idle": 0.5, "idle in transaction": 0.5},
    }
    assert SessionHistory().average_sessions() == {}
