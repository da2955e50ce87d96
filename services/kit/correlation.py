"""Correlation keys of an RPC: bound to its log lines and set on its server span.

A request that names a reservation, a review, a movie or a screening (`reservation_id`,
`review_id` ...) gets that key on every log line written while it is handled, and on its
server span as `cinema.<key>`; so does its idempotency key (`request_id`). A response that
carries a new aggregate (`reservation`, `review` with an `id`) adds its id to the span, so
the trace of a new reservation is found in Jaeger by `cinema.reservation_id`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message
from opentelemetry import trace

from services.kit.logging import bind_correlation

# Request fields that name the aggregate an RPC is about, in order of preference for `correlation_id`.
REQUEST_KEYS = ("reservation_id", "review_id", "payment_id", "request_id", "screening_id", "movie_id")
# Response fields holding the aggregate an RPC created or returned, and the key its id goes to.
RESPONSE_AGGREGATES = (("reservation", "reservation_id"), ("review", "review_id"), ("payment", "payment_id"))


def request_keys(request: object) -> dict[str, str]:
    """The correlation keys a request message names (non-empty string fields of REQUEST_KEYS)."""
    if not isinstance(request, Message):
        return {}
    fields = request.DESCRIPTOR.fields_by_name
    keys: dict[str, str] = {}
    for name in REQUEST_KEYS:
        if name in fields:
            value = getattr(request, name)
            if isinstance(value, str) and value:
                keys[name] = value
    return keys


def response_keys(response: object) -> dict[str, str]:
    """Ids of the aggregates a response carries, e.g. {"reservation_id": reply.reservation.id}."""
    if not isinstance(response, Message):
        return {}
    fields = response.DESCRIPTOR.fields_by_name
    keys: dict[str, str] = {}
    for name, key in RESPONSE_AGGREGATES:
        field = fields.get(name)
        if field is None or field.message_type is None or "id" not in field.message_type.fields_by_name:
            continue
        if response.HasField(name) and (value := getattr(getattr(response, name), "id", "")):
            keys[key] = str(value)
    return keys


def _mark_span(keys: dict[str, str]) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        for key, value in keys.items():
            span.set_attribute(f"cinema.{key}", value)


class CorrelationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Binds a unary RPC's correlation keys to its logs and its server span (streams pass through)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]] = handler.unary_unary  # type: ignore[assignment]

        async def correlated(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            keys = request_keys(request)
            _mark_span(keys)
            primary = next(iter(keys.values()), None)
            with bind_correlation(primary, **keys):
                response = await behavior(request, context)
            _mark_span(response_keys(response))
            return response

        return grpc.unary_unary_rpc_method_handler(
            correlated,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
