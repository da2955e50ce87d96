"""The adaptive concurrency limit's arithmetic (AIMD on the latency of admitted RPCs)."""

from __future__ import annotations

from services.kit.admission import AdaptiveLimit, AdmissionSettings

SETTINGS = AdmissionSettings(max_in_flight=40, min_in_flight=4, target_s=0.2, window=20, backoff=0.5)


def test_starts_at_the_maximum_and_stays_there_while_fast() -> None:
    limit = AdaptiveLimit(SETTINGS)
    for _ in range(500):
        limit.on_done(0.01)
    assert limit.limit == 40


def test_a_slow_window_cuts_the_limit_and_fast_ones_grow_it_back() -> None:
    limit = AdaptiveLimit(SETTINGS)
    for _ in range(20):
        limit.on_done(1.0)
    assert limit.limit == 20
    for _ in range(20):
        limit.on_done(1.0)
    assert limit.limit == 10
    for _ in range(2000):
        limit.on_done(0.01)
    assert limit.limit == 40


def test_never_below_the_minimum() -> None:
    limit = AdaptiveLimit(SETTINGS)
    for _ in range(20 * 50):
        limit.on_done(5.0)
    assert limit.limit == 4


def test_a_few_slow_calls_in_a_window_do_not_cut() -> None:
    limit = AdaptiveLimit(SETTINGS)
    for i in range(20 * 10):
        limit.on_done(1.0 if i % 20 == 0 else 0.01)  # one slow call in twenty: 5 %, under the 10 % cut
    assert limit.limit == 40
