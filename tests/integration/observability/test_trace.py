"""One reservation, one trace: from the reservation RPC through payment, the outbox relay and
JetStream to the viewpage and notification consumers, read back from a real Jaeger.

The services export over OTLP/HTTP; the test finds the trace by the `cinema.reservation_id`
attribute of the reservation's server span (as a person would in Jaeger) and checks each hop
and its parentage. The gateway and Envoy spans join at the top once the edge lands.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from scripts.observability import trace as trace_cli
from scripts.observability.jaeger import JaegerQuery, TraceSpan, ancestors, render_tree, spans_of
from tests.integration.observability.conftest import JaegerServer
from tests.integration.observability.system import BookingRun

pytestmark = pytest.mark.integration

CREATE = "/cinema.reservation.v1.ReservationService/CreateReservation"
AUTHORIZE = "/cinema.payment.v1.PaymentService/AuthorizePayment"
CONFIRMED = "cinema.reservation.v1.ReservationConfirmed"


async def trace_of(query: JaegerQuery, service: str, tags: dict[str, str], until: Any, within_s: float = 30.0) -> Any:
    """The one trace of `service` tagged `tags`, once `until(spans)` holds (spans arrive in batches)."""
    deadline = time.monotonic() + within_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(query.find, service, tags)
        if len(found) == 1:
            trace = await asyncio.to_thread(query.trace, found[0]["traceID"])
            if trace is not None and until(spans_of(trace)):
                return trace
        await asyncio.sleep(0.5)
    raise AssertionError(f"no single complete trace of {service} {tags} within {within_s:.0f} s: {len(found)} found")


def one(spans: dict[str, TraceSpan], service: str, kind: str, name: str) -> TraceSpan:
    matching = [s for s in spans.values() if s.service == service and s.kind == kind and s.name == name]
    seen = sorted({f"{s.service} {s.kind} {s.name}" for s in spans.values()})
    assert len(matching) == 1, f"expected one {kind} span {name!r} of {service}, found {len(matching)} in {seen}"
    return matching[0]


def complete(spans: dict[str, TraceSpan]) -> bool:
    kinds = {(s.service, s.kind) for s in spans.values()}
    return {("viewpage", "consumer"), ("notification", "consumer"), ("payment", "server")} <= kinds


async def test_a_reservation_is_one_trace_from_the_rpc_to_the_last_consumer(
    run: BookingRun, jaeger_server: JaegerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    reservation_id = next(iter(run.confirmed))
    trace = await trace_of(jaeger_server.query, "reservation", {"cinema.reservation_id": reservation_id}, complete)
    spans = spans_of(trace)
    tree = render_tree(trace)

    server = one(spans, "reservation", "server", CREATE)
    assert server.tags.get("cinema.reservation_id") == reservation_id, tree
    assert server.parent_id is None or server.parent_id not in spans, "the RPC span is the root (no edge yet)"

    # reservation -> payment: a client span under the RPC, payment's server span under it.
    client = one(spans, "reservation", "client", AUTHORIZE)
    assert server in ancestors(spans, client), tree
    payment = one(spans, "payment", "server", AUTHORIZE)
    assert payment.parent_id == client.span_id, tree

    # The relay publishes later, from another task, yet under the span that wrote the event.
    publish = one(spans, "reservation", "producer", "publish cinema.reservation.confirmed")
    assert publish.parent_id == server.span_id, tree
    assert publish.tags.get("cinema.reservation_id") == reservation_id

    # Each consumer continues the event's creation context (the NATS traceparent header).
    for consumer in ("viewpage", "notification"):
        handled = one(spans, consumer, "consumer", f"consume {CONFIRMED}")
        assert handled.parent_id == server.span_id, tree
        assert handled.start_us >= publish.start_us, tree
        assert handled.tags.get("cinema.reservation_id") == reservation_id

    # Store calls made under those spans are there too, and nothing leaks their values.
    postgres = [s for s in spans.values() if s.tags.get("db.system.name") == "postgresql"]
    assert {s.service for s in postgres} >= {"reservation", "payment", "notification"}, tree
    redis = [s for s in spans.values() if s.service == "viewpage" and s.tags.get("db.system") == "redis"]
    assert redis, tree
    statements = " ".join(str(s.tags.get("db.query.text", "")) for s in postgres)
    assert "4242" not in statements and reservation_id not in statements

    # What a person runs to see it (the Go-built Jaeger has no UI).
    assert await asyncio.to_thread(trace_cli.main, [reservation_id, "--jaeger", jaeger_server.spec.ui_url]) == 0
    shown = capsys.readouterr().out
    assert f"trace {trace['traceID']}" in shown and "notification: consume" in shown


async def test_a_review_traces_through_the_document_store_and_its_relay(
    run: BookingRun, jaeger_server: JaegerServer
) -> None:
    def movie_counted(spans: dict[str, TraceSpan]) -> bool:
        return any(s.service == "movie" and s.kind == "consumer" for s in spans.values())

    trace = await trace_of(jaeger_server.query, "review", {"cinema.review_id": run.review_id}, movie_counted)
    spans = spans_of(trace)
    tree = render_tree(trace)
    server = one(spans, "review", "server", "/cinema.review.v1.ReviewService/CreateReview")
    mongo = [s for s in spans.values() if s.service == "review" and s.tags.get("db.system.name") == "mongodb"]
    assert mongo and all(server in ancestors(spans, s) for s in mongo), tree
    publish = one(spans, "review", "producer", "publish cinema.review.posted")
    assert server in ancestors(spans, publish), tree
    counted = one(spans, "movie", "consumer", "consume cinema.review.v1.ReviewPosted")
    assert server in ancestors(spans, counted), tree
    assert counted.tags.get("cinema.review_id") == run.review_id
