"""OpenTelemetry tracing: provider set-up, gRPC interceptors and trace context in NATS headers.

Spans are exported over OTLP/HTTP only when an endpoint is configured; otherwise the
provider still creates spans (so trace ids appear in logs and travel to other services)
but nothing leaves the process. Propagation is W3C Trace Context (plus W3C baggage).

What a reservation's trace holds: the gRPC server span of each RPC (and the client span of
each outgoing call, e.g. reservation -> payment), the store calls made under them
(services.kit.store_tracing), and for each event it raised: the outbox relay's `publish` span
and each consumer's span, both children of the span that wrote the event, whose context rides
in the envelope and in the NATS `traceparent` header (services.kit.events).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.kit import store_tracing
from services.kit.settings import KitSettings

log = logging.getLogger(__name__)

# Health probes and reflection would drown the real traffic in traces.
_UNTRACED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

_provider: TracerProvider | None = None


def sampler_for(settings: KitSettings) -> Sampler:
    """Parent-based: a trace is recorded whole or not at all; only the roots draw by the ratio."""
    return ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))


def configure_tracing(settings: KitSettings) -> TracerProvider:
    """Install the process-wide tracer provider and W3C propagators (once per process).

    The OpenTelemetry global provider can be set only once, so a second call (several
    servers in one test process) returns the first provider.
    """
    global _provider
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
    if _provider is not None:
        return _provider
    resource = Resource.create({"service.name": settings.service_name, "service.version": settings.service_version})
    provider = TracerProvider(resource=resource, sampler=sampler_for(settings))
    if settings.otlp_endpoint:
        # Imported here: the exporter pulls in requests/protobuf machinery a tracing-off run never needs.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("trace export on", extra={"otlp_endpoint": endpoint})
    trace.set_tracer_provider(provider)
    _provider = provider
    if settings.otlp_endpoint:
        # Store spans are only worth their cost when someone will see them; the RPC and
        # messaging spans are made regardless, since their ids correlate the logs.
        store_tracing.instrument_stores()
    return provider


def flush_tracing() -> None:
    """Export the spans still buffered (blocking: call it through `asyncio.to_thread`).

    Flush rather than shut down: the provider is process-wide and may serve another host.
    """
    if _provider is not None:
        _provider.force_flush()


def _traced(details: Any) -> bool:
    method = getattr(details, "method", "") or ""
    if isinstance(method, bytes):
        method = method.decode()
    return not str(method).startswith(_UNTRACED_PREFIXES)


def server_interceptor() -> grpc.aio.ServerInterceptor[Any, Any]:
    """The grpc.aio server interceptor that opens a server span per RPC (continuing the caller's trace)."""
    interceptor: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor(filter_=_traced)  # type: ignore[no-untyped-call]
    return interceptor


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """grpc.aio client interceptors that open a client span and send `traceparent` metadata.

    Use them when building a channel: `grpc.aio.insecure_channel(target, interceptors=client_interceptors())`.
    """
    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors()  # type: ignore[no-untyped-call]
    return interceptors


def inject_headers(headers: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Write the current trace context (`traceparent`, `tracestate`, `baggage`) into message headers."""
    carrier: MutableMapping[str, str] = {} if headers is None else headers
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """Read a trace context from message headers; use it as the parent of the consumer span."""
    return propagate.extract(dict(headers or {}))


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, e.g. for an event envelope; None outside a span."""
    return inject_headers({}).get("traceparent")
