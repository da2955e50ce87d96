"""The kit's spans: store calls only inside a trace (and without their values), the relay's
publish as a child of the span that wrote the event, and the correlation keys of requests,
responses and envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cinema.payment.v1 import events_pb2 as payment_events
from cinema.reservation.v1 import events_pb2 as reservation_events
from cinema.reservation.v1 import reservation_pb2
from cinema.review.v1 import events_pb2 as review_events
from services.kit import store_tracing, telemetry
from services.kit.correlation import request_keys, response_keys
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.settings import KitSettings


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Spans finished through the process-wide provider the kit uses."""
    provider = telemetry.configure_tracing(KitSettings(service_name="unit"))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()  # the processor stays on the provider; a shut exporter keeps nothing


def parent_tracer() -> trace.Tracer:
    return trace.get_tracer("unit.test")


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def query_record(**overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "query": "SELECT id FROM reservations WHERE card = $1",
        "args": ("4242424242424242",),
        "timeout": None,
        "elapsed": 0.025,
        "exception": None,
        "conn_addr": ("127.0.0.1", 5432),
        "conn_params": SimpleNamespace(database="reservation", user="postgres"),
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_child_only_tracer_opens_spans_inside_a_trace_only() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = store_tracing.ChildOnlyTracer(provider.get_tracer("stores"))
    with tracer.start_as_current_span("GET") as outside:
        assert not outside.get_span_context().is_valid
    assert tracer.start_span("GET") is trace.INVALID_SPAN
    with provider.get_tracer("rpc").start_as_current_span("rpc") as rpc, tracer.start_as_current_span("GET") as inside:
        assert inside.get_span_context().trace_id == rpc.get_span_context().trace_id
    assert [s.name for s in exporter.get_finished_spans()] == ["GET", "rpc"]


def test_a_query_is_a_client_span_of_the_current_one_back_dated_and_without_values(
    exported: InMemorySpanExporter,
) -> None:
    store_tracing.pg_query_span(query_record())  # outside a trace: nothing
    assert exported.get_finished_spans() == ()
    with parent_tracer().start_as_current_span("rpc") as rpc:
        store_tracing.pg_query_span(query_record())
    span = only(exported, "SELECT reservation")
    assert span.kind is trace.SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == rpc.get_span_context().span_id
    assert span.end_time is not None and span.start_time is not None
    assert abs((span.end_time - span.start_time) / 1e9 - 0.025) < 0.005
    attributes = dict(span.attributes or {})
    assert attributes["db.system.name"] == "postgresql" and attributes["db.namespace"] == "reservation"
    assert attributes["db.query.text"] == "SELECT id FROM reservations WHERE card = $1"
    assert "4242424242424242" not in repr(attributes)


def test_a_failed_query_marks_its_span(exported: InMemorySpanExporter) -> None:
    with parent_tracer().start_as_current_span("rpc"):
        store_tracing.pg_query_span(query_record(query="BEGIN;", exception=TimeoutError()))
    span = only(exported, "BEGIN reservation")
    assert span.status.status_code is trace.StatusCode.ERROR


def test_a_mongo_command_is_a_client_span_from_start_to_reply(exported: InMemorySpanExporter) -> None:
    listener = store_tracing.MongoCommandSpans()
    started = SimpleNamespace(
        command_name="insert",
        command={"insert": "reviews", "documents": [{"text": "secret"}]},
        database_name="review",
        request_id=7,
        connection_id=("127.0.0.1", 27017),
    )
    listener.started(started)  # type: ignore[arg-type]  # duck-typed event
    assert listener._spans == {}  # outside a trace
    with parent_tracer().start_as_current_span("rpc"):
        listener.started(started)  # type: ignore[arg-type]
        listener.succeeded(SimpleNamespace(request_id=7, connection_id=("127.0.0.1", 27017)))  # type: ignore[arg-type]
    span = only(exported, "insert review.reviews")
    attributes = dict(span.attributes or {})
    assert attributes["db.collection.name"] == "reviews" and "secret" not in repr(attributes)
    assert listener._spans == {}


class FakeJetStream:
    """Records what `jetstream.publish` sends (unit tests only)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        self.headers = dict(kwargs["headers"])
        return SimpleNamespace(seq=1, duplicate=False, stream=kwargs["stream"])


async def test_the_relay_publish_continues_the_writers_trace(
    exported: InMemorySpanExporter,
) -> None:
    event = reservation_events.ReservationConfirmed(reservation_id="r-1", seats=["A1"])
    with parent_tracer().start_as_current_span("CreateReservation") as rpc:
        envelope = env.wrap(event, source="test", subject="r-1", aggregate_id="r-1", aggregate_version=1)
    js = FakeJetStream()
    await jetstream.publish(js, envelope)  # type: ignore[arg-type]  # later, outside the RPC
    publish = only(exported, "publish cinema.reservation.confirmed")
    assert publish.kind is trace.SpanKind.PRODUCER
    assert publish.context is not None and publish.parent is not None
    assert publish.context.trace_id == rpc.get_span_context().trace_id
    assert publish.parent.span_id == rpc.get_span_context().span_id
    assert dict(publish.attributes or {})["cinema.reservation_id"] == "r-1"
    # The header carries the creation context (the RPC's), the consumers' parent.
    assert js.headers["traceparent"] == envelope.traceparent
    assert js.headers["traceparent"].split("-")[2] == format(rpc.get_span_context().span_id, "016x")
    assert js.headers["Nats-Msg-Id"] == envelope.id


def test_correlation_keys_of_requests_responses_and_envelopes() -> None:
    create = reservation_pb2.CreateReservationRequest(screening_id="s-1", request_id="q-1")
    assert request_keys(create) == {"request_id": "q-1", "screening_id": "s-1"}
    assert request_keys(reservation_pb2.GetReservationRequest(reservation_id="r-1")) == {"reservation_id": "r-1"}
    reply = reservation_pb2.CreateReservationResponse(reservation=reservation_pb2.Reservation(id="r-9"))
    assert response_keys(reply) == {"reservation_id": "r-9"}
    assert response_keys(reservation_pb2.CreateReservationResponse()) == {}

    def keys(event: Any, subject: str) -> dict[str, str]:
        wrapped = env.wrap(event, source="t", subject=subject, aggregate_id=subject, aggregate_version=1)
        return env.correlation_fields(wrapped)

    assert keys(reservation_events.ReservationCancelled(), "r-1") == {"reservation_id": "r-1"}
    assert keys(payment_events.PaymentRefunded(), "r-1") == {"reservation_id": "r-1"}
    assert keys(review_events.ReviewPosted(), "v-1") == {"review_id": "v-1"}
