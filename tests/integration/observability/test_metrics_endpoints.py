"""Every service's `/metrics` after a full run: the series of docs/observability.md exist and
their values match what the run did (seats sold, payments by outcome, outboxes drained,
consumers caught up, nothing dead-lettered)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.observability.system import BookingRun, ObservedSystem

pytestmark = pytest.mark.integration

Samples = list[tuple[str, dict[str, str], float]]

# Events each service's consumers handle in the run: viewpage every one (2 catalog, 4 booking,
# 4 payment, 1 review); notification confirmations, the cancellation and the refund; payment
# the cancellation; reservation the catalog; movie the review.
CONSUMED = {"viewpage": 11, "notification": 4, "payment": 1, "reservation": 2, "movie": 1}
CONSUMERS = set(CONSUMED)
RELAYS = {"payment", "reservation", "movie", "review"}


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return [
        (s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
    ]


def values(samples: Samples, name: str, **labels: str) -> list[float]:
    return [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]


def total(samples: Samples, name: str, **labels: str) -> float:
    found = values(samples, name, **labels)
    assert found, f"no {name}{labels or ''}"
    return sum(found)


async def scrape_all(system: ObservedSystem) -> Mapping[str, Samples]:
    return {name: await asyncio.to_thread(scrape, port) for name, port in system.metrics_ports.items()}


async def test_every_service_exposes_red_metrics_per_rpc(run: BookingRun, observed_system: ObservedSystem) -> None:
    metrics = await scrape_all(observed_system)
    for name, samples in metrics.items():
        handled = [lab for n, lab, _ in samples if n == "grpc_server_handled_total"]
        assert handled and all(lab.get("grpc_code") for lab in handled), name
        assert values(samples, "grpc_server_handling_seconds_bucket"), f"{name}: latency is a histogram"
        assert values(samples, "grpc_server_started_total"), name
    reservation = metrics["reservation"]
    create = {"grpc_service": "cinema.reservation.v1.ReservationService", "grpc_method": "CreateReservation"}
    assert total(reservation, "grpc_server_handled_total", grpc_code="OK", **create) == 2
    assert total(reservation, "grpc_server_handled_total", grpc_code="FAILED_PRECONDITION", **create) == 1
    assert total(reservation, "grpc_server_handling_seconds_count", **create) == 3


async def test_business_series_match_the_run(run: BookingRun, observed_system: ObservedSystem) -> None:
    metrics = await scrape_all(observed_system)
    reservation, payment = metrics["reservation"], metrics["payment"]
    assert total(reservation, "cinema_seats_sold_total") == run.seats_sold == 5
    assert total(reservation, "cinema_seats_released_total") == 3
    assert total(reservation, "cinema_reservations_total", outcome="confirmed") == 2
    assert total(reservation, "cinema_reservations_total", outcome="failed") == 1
    assert total(reservation, "cinema_reservations_total", outcome="cancelled") == 1
    assert total(payment, "cinema_payments_total", outcome="approved") == 2
    assert total(payment, "cinema_payments_total", outcome="declined") == 1
    assert total(payment, "cinema_payments_total", outcome="refunded") == 1
    assert total(payment, "cinema_payments_total", outcome="failed") == 0


async def test_outboxes_drain_and_consumers_catch_up(run: BookingRun, observed_system: ObservedSystem) -> None:
    deadline = time.monotonic() + 60  # consumers sample their backlog every 5 s; CI machines are busy
    while True:
        metrics = await scrape_all(observed_system)
        backlog = {n: sum(values(s, "cinema_outbox_backlog")) for n, s in metrics.items() if n in RELAYS}
        pending = {n: sum(values(s, "cinema_consumer_pending_messages")) for n, s in metrics.items() if n in CONSUMERS}
        consumed = {n: sum(values(metrics[n], "cinema_events_consumed_total", outcome="ok")) for n in CONSUMERS}
        sampled = all(values(metrics[n], "cinema_consumer_pending_messages") for n in CONSUMERS)
        if consumed == CONSUMED and sampled and not any(backlog.values()) and not any(pending.values()):
            break
        assert time.monotonic() < deadline, f"outbox backlog {backlog}, consumer pending {pending}, handled {consumed}"
        await asyncio.sleep(1)

    for name in RELAYS:
        samples = metrics[name]
        assert total(samples, "cinema_outbox_published_total") >= 1, name
        ages = values(samples, "cinema_outbox_oldest_age_seconds")
        assert ages and max(ages) == 0, f"{name}: oldest unpublished event {ages}"
    # Reservation published two confirmations, a failure and a cancellation; payment two
    # authorizations, a decline and a refund.
    assert total(metrics["reservation"], "cinema_outbox_published_total", service="reservation") == 4
    assert total(metrics["payment"], "cinema_outbox_published_total", service="payment") == 4
    for name in CONSUMERS:
        samples = metrics[name]
        dead = [(lab, v) for n, lab, v in samples if n == "cinema_events_dead_lettered_total"]
        assert dead and not any(v for _, v in dead), f"{name}: dead letters {dead}"
        assert values(samples, "cinema_events_redelivered_total"), name
        assert values(samples, "cinema_consumer_ack_pending_messages"), name
        assert values(samples, "cinema_event_lag_seconds_bucket"), name
