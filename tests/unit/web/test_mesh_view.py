"""The mesh page's arithmetic: Kiali's health thresholds, rates between two samples, the graph's
edges and nodes, the event flow, the trace waterfall, and a sampler that samples once for every
page and not at all while nobody watches. Pure: samples are built here (the real sources are read
in tests/browser/test_mesh_page.py)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from services.web.adapters.mesh_sources import parse_envoy_stats, parse_exposition
from services.web.service_layer import mesh_traces
from services.web.service_layer.mesh import (
    DEGRADED,
    FAILURE,
    HEALTHY,
    IDLE,
    EnvoyStats,
    MeshSampler,
    RawSample,
    RestartCounter,
    Sample,
    ServiceScrape,
    build_view,
    health_of,
    quantile_from_buckets,
)


def test_health_follows_kialis_default_thresholds() -> None:
    assert health_of(0.0, 5.0) == HEALTHY
    assert health_of(0.0009, 5.0) == HEALTHY
    assert health_of(0.001, 5.0) == DEGRADED
    assert health_of(0.0999, 5.0) == DEGRADED
    assert health_of(0.10, 5.0) == FAILURE
    assert health_of(None, 0.0) == IDLE
    assert health_of(0.5, 0.0) == IDLE


def test_quantile_interpolates_within_a_bucket_as_prometheus_does() -> None:
    buckets = {0.5: 0.0, 1.0: 0.0, 2.5: 60.0, math.inf: 60.0}
    assert quantile_from_buckets(0.99, buckets) == pytest.approx(2.485)
    assert quantile_from_buckets(0.5, {0.1: 100.0, math.inf: 100.0}) == pytest.approx(0.05)
    assert quantile_from_buckets(0.99, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile_from_buckets(0.99, {0.1: 0.0, 1.0: 5.0}) is None  # no +Inf bucket


def handled(code: str, value: float, method: str = "CreateReservation") -> Sample:
    labels = {"grpc_service": "cinema.reservation.v1.ReservationService", "grpc_method": method, "grpc_code": code}
    return Sample("grpc_server_handled_total", labels, value)


def envoy(total: float, errors: float, egress: float, healthy: int, ejections: float = 0.0) -> EnvoyStats:
    return EnvoyStats(
        {
            "http.ingress.downstream_rq_total": total * 2,
            "http.ingress.downstream_rq_5xx": 0.0,
            "cluster.payment.upstream_rq_total": total,
            "cluster.payment.upstream_rq_5xx": errors,
            "cluster.payment.upstream_rq_retry": errors / 2,
            "cluster.payment.membership_total": 1.0,
            "cluster.payment.membership_healthy": float(healthy),
            "cluster.payment.outlier_detection.ejections_enforced_total": ejections,
            "cluster.payment.outlier_detection.ejections_active": 1.0 if ejections else 0.0,
            "http.egress_payment.downstream_rq_total": egress,
            "cluster.movie.upstream_rq_total": total,
            "cluster.movie.upstream_rq_5xx": 0.0,
            "cluster.movie.membership_total": 2.0,
            "cluster.movie.membership_healthy": 2.0,
            "http.egress_movie.downstream_rq_total": total / 2,
        },
        {"cluster.payment.upstream_rq_time": 12.0},
    )


def reservation_metrics(ok: float, failed: float, started: float = 1000.0) -> list[Sample]:
    return [
        handled("OK", ok),
        handled("UNAVAILABLE", failed),
        handled("FAILED_PRECONDITION", 50.0),  # a taken seat: the caller's outcome, not an error
        Sample("process_start_time_seconds", {}, started),
        Sample("cinema_outbox_backlog", {"service": "reservation", "outbox": "reservation"}, 3.0),
        Sample("cinema_outbox_oldest_age_seconds", {"service": "reservation", "outbox": "reservation"}, 1.5),
        Sample("cinema_outbox_published_total", {"service": "reservation", "outbox": "reservation"}, ok),
        Sample("cinema_events_consumed_total", {"consumer": "reservation-catalog", "type": "x", "outcome": "ok"}, ok),
    ]


JSZ: dict[str, Any] = {
    "account_details": [
        {
            "stream_detail": [
                {
                    "name": "CINEMA_MOVIE",
                    "state": {"messages": 40, "bytes": 4000, "consumer_count": 1},
                    "consumer_detail": [{"name": "reservation-catalog", "num_pending": 2, "num_ack_pending": 1}],
                },
                {"name": "CINEMA_DEAD_LETTER", "state": {"messages": 3, "bytes": 300, "consumer_count": 0}},
            ]
        }
    ]
}


def raw(at: float, stats: EnvoyStats | None, services: dict[str, list[Sample] | None]) -> RawSample:
    scrapes = {
        name: ServiceScrape(samples, "" if samples is not None else "ReadTimeout") for name, samples in services.items()
    }
    return RawSample(at, stats, scrapes, JSZ, True)


def edge(view: Any, source: str, target: str) -> Any:
    return next(e for e in view.edges if (e.source, e.target) == (source, target))


def node(view: Any, name: str) -> Any:
    return next(n for n in view.nodes if n.name == name)


def test_two_samples_make_rates_ratios_and_health() -> None:
    restarts = RestartCounter()
    first = raw(100.0, envoy(100, 0, 100, 1), {"reservation": reservation_metrics(100, 0)})
    build_view(first, None, restarts, {})
    second = raw(110.0, envoy(200, 20, 200, 1), {"reservation": reservation_metrics(300, 0)})
    view = build_view(second, first, restarts, {})

    call = edge(view, "reservation", "payment")  # payment is called through its egress listener
    assert call.rps == pytest.approx(10.0)
    assert call.error_ratio == pytest.approx(0.2)
    assert call.health == FAILURE
    assert call.retries_per_s == pytest.approx(1.0)
    assert call.p99_ms == 12.0
    assert node(view, "payment").health == FAILURE  # 20 % of its calls failed

    gateway_to_movie = edge(view, "gateway", "movie")
    assert gateway_to_movie.rps == pytest.approx(5.0)
    assert edge(view, "ingress", "movie").rps == pytest.approx(5.0)  # the rest came straight in
    assert node(view, "movie").health == HEALTHY
    assert (node(view, "movie").healthy_instances, node(view, "movie").instances) == (2, 2)

    reservation = node(view, "reservation")
    assert reservation.rps == pytest.approx(20.0)
    assert reservation.error_ratio == 0.0  # FAILED_PRECONDITION is not the system's fault
    assert reservation.health == HEALTHY
    assert edge(view, "reservation", "postgres").kind == "store"

    [outbox] = view.outboxes
    assert (outbox.service, outbox.backlog, outbox.oldest_age_s) == ("reservation", 3.0, 1.5)
    assert outbox.published_per_s == pytest.approx(20.0)
    [consumer] = view.consumers
    assert (consumer.service, consumer.pending, consumer.ack_pending) == ("reservation", 2, 1)
    assert consumer.handled_per_s == pytest.approx(20.0)
    assert view.dead_letters == 3
    assert edge(view, "nats", "reservation").rps == pytest.approx(20.0)


def test_no_healthy_instance_a_silent_service_and_a_restart_are_failures_and_counted() -> None:
    restarts = RestartCounter()
    first = raw(100.0, envoy(100, 0, 100, 1), {"reservation": reservation_metrics(100, 0, started=1000.0)})
    build_view(first, None, restarts, {})
    second = raw(
        105.0,
        envoy(100, 0, 100, 0, ejections=1),
        {"reservation": reservation_metrics(100, 0, started=1090.0), "payment": None},
    )
    view = build_view(second, first, restarts, {})
    payment = node(view, "payment")
    assert payment.health == FAILURE
    assert payment.healthy_instances == 0
    assert "metrics do not answer" in payment.note
    assert edge(view, "reservation", "payment").ejections == 1
    assert node(view, "reservation").restarts == 1


def test_envoy_dead_means_the_ingress_is_down() -> None:
    view = build_view(raw(1.0, None, {}), None, RestartCounter(), {})
    assert node(view, "ingress").health == FAILURE


def test_envoys_json_stats_and_a_services_exposition_parse() -> None:
    stats = parse_envoy_stats(
        {
            "stats": [
                {"name": "cluster.payment.upstream_rq_total", "value": 7},
                {
                    "histograms": {
                        "supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
                        "computed_quantiles": [
                            {
                                "name": "cluster.payment.upstream_rq_time",
                                "values": [{"interval": None, "cumulative": 1}] * 6
                                + [{"interval": 41, "cumulative": 30}],
                            },
                            {
                                "name": "http.ingress.downstream_rq_time",
                                "values": [{"interval": None, "cumulative": 2}] * 7,
                            },
                        ],
                    }
                },
            ]
        }
    )
    assert stats.counters == {"cluster.payment.upstream_rq_total": 7.0}
    assert stats.p99_ms == {"cluster.payment.upstream_rq_time": 41.0, "http.ingress.downstream_rq_time": 2.0}
    samples = parse_exposition(
        "# TYPE grpc_server_handled_total counter\n"
        'grpc_server_handled_total{grpc_code="OK",grpc_method="M",grpc_service="S",grpc_type="unary"} 4.0\n'
        "# TYPE python_gc_objects_collected_total counter\n"
        'python_gc_objects_collected_total{generation="0"} 9.0\n'
        'grpc_server_started_total{grpc_method="M"} 4.0\n'
        'grpc_server_handling_seconds_bucket{grpc_method="M",le="+Inf"} 4.0\n'
        "process_start_time_seconds 1.7e+09\n"
        'cinema_outbox_backlog{outbox="a \\"quoted\\" one",service="s"} 2.0 1700000000000\n'
    )
    assert samples == [
        Sample(
            "grpc_server_handled_total",
            {"grpc_code": "OK", "grpc_method": "M", "grpc_service": "S", "grpc_type": "unary"},
            4.0,
        ),
        Sample("grpc_server_handling_seconds_bucket", {"grpc_method": "M", "le": "+Inf"}, 4.0),
        Sample("process_start_time_seconds", {}, 1.7e9),
        Sample("cinema_outbox_backlog", {"outbox": 'a "quoted" one', "service": "s"}, 2.0),
    ]


def test_a_trace_becomes_a_waterfall_with_the_consumers_under_their_parent() -> None:
    trace = {
        "traceID": "t1",
        "processes": {"p1": {"serviceName": "reservation"}, "p2": {"serviceName": "payment"}},
        "spans": [
            {
                "spanID": "a",
                "operationName": "CreateReservation",
                "processID": "p1",
                "startTime": 1_000_000,
                "duration": 50_000,
                "tags": [{"key": "cinema.reservation_id", "value": "r-1"}],
            },
            {
                "spanID": "c",
                "operationName": "consume",
                "processID": "p2",
                "startTime": 1_030_000,
                "duration": 5_000,
                "references": [{"refType": "FOLLOWS_FROM", "spanID": "b"}],
                "tags": [{"key": "otel.status_code", "value": "ERROR"}],
            },
            {
                "spanID": "b",
                "operationName": "publish",
                "processID": "p1",
                "startTime": 1_020_000,
                "duration": 2_000,
                "references": [{"refType": "CHILD_OF", "spanID": "a"}],
            },
        ],
    }
    rows = mesh_traces.waterfall(trace)
    assert [(r.span_id, r.depth, r.service) for r in rows] == [
        ("a", 0, "reservation"),
        ("b", 1, "reservation"),
        ("c", 2, "payment"),
    ]
    assert rows[2].start_ms == 30.0 and rows[2].duration_ms == 5.0 and rows[2].error
    assert not rows[0].error
    older = {"spans": [{"spanID": "x", "startTime": 1, "tags": [{"key": "cinema.reservation_id", "value": "r-0"}]}]}
    assert mesh_traces.reservation_ids([older, trace, trace]) == ["r-1", "r-0"]
    assert mesh_traces.best_trace([older, trace]) is trace


class CountingSources:
    """A fake source that counts its reads (the sampler's own logic is under test, not HTTP)."""

    services = ("reservation",)

    def __init__(self) -> None:
        self.reads = 0

    async def envoy_stats(self) -> EnvoyStats:
        self.reads += 1
        return envoy(self.reads, 0, self.reads, 1)

    async def service_metrics(self, name: str) -> list[Sample]:
        return reservation_metrics(self.reads, 0)

    async def jetstream(self) -> dict[str, Any]:
        return JSZ

    async def nats_healthy(self) -> bool:
        raise OSError("monitor down")  # a failing source is reported, the round goes on


async def test_one_sampler_serves_every_page_and_sleeps_when_nobody_watches() -> None:
    sources = CountingSources()
    sampler = MeshSampler(sources, interval_s=0.5, idle_after_s=1.0)
    sampler.start()
    try:
        await asyncio.sleep(0.3)
        assert sources.reads == 0  # nobody asked yet
        views = await asyncio.gather(*(sampler.latest() for _ in range(20)))  # twenty pages at once
        assert all(v is views[0] for v in views) and views[0] is not None
        assert sources.reads == 1
        assert "nats" in views[0].errors and views[0].cost["rounds"] == 1.0
        await asyncio.sleep(1.2)
        watched = sources.reads
        assert 2 <= watched <= 4
        await asyncio.sleep(1.5)  # nobody asked for a second: the sampler is asleep
        asleep = sources.reads
        await asyncio.sleep(1.0)
        assert sources.reads == asleep
        assert await sampler.latest() is not None
        assert sources.reads == asleep + 1
    finally:
        await sampler.stop()
