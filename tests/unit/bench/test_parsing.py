"""Reading what the stack reports: Prometheus pages, py-spy's collapsed stacks, --weights."""

from __future__ import annotations

import math

import pytest

from scripts.bench.profiling import package_of, summarize_raw
from scripts.bench.serverstats import parse_histograms, series, window
from scripts.bench.workload import DEFAULT_WEIGHTS, parse_weights

PAGE = """# HELP grpc_server_handling_seconds Time to handle an RPC on the server.
# TYPE grpc_server_handling_seconds histogram
grpc_server_handling_seconds_bucket{grpc_method="GetBoard",grpc_service="s",grpc_type="unary",le="0.001"} 2.0
grpc_server_handling_seconds_bucket{grpc_method="GetBoard",grpc_service="s",grpc_type="unary",le="0.01"} 8.0
grpc_server_handling_seconds_bucket{grpc_method="GetBoard",grpc_service="s",grpc_type="unary",le="+Inf"} 10.0
grpc_server_handling_seconds_count{grpc_method="GetBoard",grpc_service="s",grpc_type="unary"} 10.0
grpc_server_handling_seconds_sum{grpc_method="GetBoard",grpc_service="s",grpc_type="unary"} 0.05
# HELP viewpage_event_lag_seconds Time from an event's creation to its application to the board
# TYPE viewpage_event_lag_seconds histogram
viewpage_event_lag_seconds_bucket{context="reservation",le="0.01"} 1.0
viewpage_event_lag_seconds_bucket{context="reservation",le="+Inf"} 4.0
viewpage_event_lag_seconds_count{context="reservation"} 4.0
viewpage_event_lag_seconds_sum{context="reservation"} 0.5
# HELP other_total x
# TYPE other_total counter
other_total 3.0
"""


def test_parse_histograms_keys_series_by_method_or_context() -> None:
    scrape = parse_histograms(PAGE, "viewpage")
    board = scrape[("viewpage", "grpc_server_handling_seconds", "GetBoard")]
    assert board.buckets == ((0.001, 2.0), (0.01, 8.0), (math.inf, 10.0))
    assert board.total == pytest.approx(0.05)
    lag = series(scrape, "viewpage", "viewpage_event_lag_seconds", "reservation")
    assert lag.count == 4
    assert len(scrape) == 2


def test_window_keeps_only_series_that_moved() -> None:
    before = parse_histograms(PAGE, "viewpage")
    after = parse_histograms(PAGE.replace("} 10.0", "} 13.0").replace("} 0.05", "} 0.08"), "viewpage")
    delta = window(before, after)
    assert list(delta) == [("viewpage", "grpc_server_handling_seconds", "GetBoard")]
    assert delta[("viewpage", "grpc_server_handling_seconds", "GetBoard")].count == 3
    assert series(delta, "payment", "grpc_server_handling_seconds", "AuthorizePayment").count == 0


LOOP = "_run_once (/x/lib/python3.11/asyncio/base_events.py:1)"
RAW = f"""\
{LOOP};execute (/v/lib/python3.11/site-packages/asyncpg/connection.py:3) 30
{LOOP};create (/repo/services/reservation/service_layer/booking.py:9) 10
{LOOP} 10
garbage line
"""


def test_py_spy_raw_output_is_summed_by_leaf_function_and_package() -> None:
    profile = summarize_raw(RAW, "reservation", rate_hz=100, seconds=1.0)
    assert profile.samples == 50
    assert profile.busy_share == pytest.approx(0.5)
    assert profile.self_functions[0] == ("execute [asyncpg]", 30)
    assert dict(profile.self_packages) == {
        "asyncpg": 30,
        "services.reservation.service_layer": 10,
        "stdlib:asyncio": 10,
    }


def test_package_of_names_owners() -> None:
    assert package_of("/v/lib/python3.11/site-packages/grpc/aio/_call.py") == "grpc"
    assert package_of("/v/lib/python3.11/site-packages/six.py") == "six"
    assert package_of("/repo/services/kit/auth.py") == "services.kit.auth"
    assert package_of("/repo/gen/python/cinema/x_pb2.py") == "generated protobuf"
    assert package_of("/usr/lib/python3.11/json/encoder.py") == "stdlib:json"


def test_parse_weights_overrides_defaults_and_rejects_unknown_names() -> None:
    weights = parse_weights("reserve=50, review=0")
    assert weights["reserve"] == 50 and weights["review"] == 0
    assert weights["board"] == DEFAULT_WEIGHTS["board"]
    assert parse_weights("") == DEFAULT_WEIGHTS
    for bad in ("book=3", "reserve", "reserve=-1"):
        with pytest.raises(ValueError):
            parse_weights(bad)


def test_the_summary_table_renders_missing_numbers_as_dashes() -> None:
    from scripts.bench.report import summary_table

    nothing: dict[str, object] = {
        "rate_per_s": 0.0,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "max_ms": None,
        "errors": {},
    }
    result = {
        "operations": {"reserve": {**nothing, "errors": {"UNAVAILABLE": 2}}},
        "total": nothing,
        "lag": {
            "client": {"p50_ms": None, "p99_ms": None, "samples": 0, "interval_ms": 10.0},
            "board": {"p50_ms": None, "p99_ms": None, "count": 0},
        },
        "raw": {},
        "ratios": {"reserve ok/s ÷ echo ops/s (64 in flight)": None, "other": 0.5, "big": 250.0},
    }
    text = "\n".join(summary_table(result))
    assert "| reserve | 0.0 | - | - | - | - | UNAVAILABLE 2 |" in text
    assert "| reserve ok/s ÷ echo ops/s (64 in flight) | - |" in text
    assert "| other | 0.500 |" in text and "| big | 250 |" in text
