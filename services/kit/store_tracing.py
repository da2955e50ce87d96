"""Client spans for the stores: PostgreSQL (asyncpg), MongoDB (PyMongo) and Redis.

A store call gets a span only inside a recorded (sampled) trace (an RPC, an event being handled, a relay
publishing): the relays' and dispatchers' polling would otherwise open a new one-span trace
every second. Spans carry the statement text as the driver holds it — parameterised SQL with
`$1` placeholders, the MongoDB command name and collection, the Redis command with `?` for
its arguments — never the values, so no customer data reaches the trace store.

- asyncpg: a query logger on every pooled connection (`pg_connection_init`, which
  `services.kit.pg.create_pool` installs); asyncpg reports each query after it ran, with its
  duration, so the span is back-dated to when the query started.

All of it is on only in a process that exports its spans (`instrument_stores`, called by
`configure_tracing` when an OTLP endpoint is set): unseen, these spans would only cost CPU.
- PyMongo: a command listener registered process-wide (applies to clients created after it).
- Redis: opentelemetry-instrumentation-redis, given a tracer that makes no root spans.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    import asyncpg

    from services.kit.mongo_tracing import MongoCommandSpans as MongoCommandSpans

_TRACER_NAME = "cinema.stores"
_instrumented = False


def _inside_trace(context: otel_context.Context | None = None) -> bool:
    # Inside a *recorded* trace: under a trace that was not sampled a store span would be
    # dropped anyway, and building it would cost as much as the query it describes.
    span_context = trace.get_current_span(context).get_span_context()
    return span_context.is_valid and span_context.trace_flags.sampled


class ChildOnlyTracer(trace.Tracer):
    """A tracer that opens a span only under a valid parent; elsewhere it hands back a no-op span."""

    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Span:
        if not _inside_trace(context):
            return trace.INVALID_SPAN
        return self._inner.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API declares its own context-manager type
        self,
        name: str,
        context: otel_context.Context | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Iterator[Span]:
        if not _inside_trace(context):
            yield trace.INVALID_SPAN
            return
        with self._inner.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span


class ChildOnlyTracerProvider(trace.TracerProvider):
    """Hands out `ChildOnlyTracer`s over the global provider (for third-party instrumentations)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return ChildOnlyTracer(trace.get_tracer_provider().get_tracer(*args, **kwargs))


def _tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME)


# ----------------------------------------------------------------------------- PostgreSQL


def _sql_operation(query: str) -> str:
    words = query.lstrip(" (\n\t").split(None, 1)
    operation = words[0].rstrip(";").upper() if words else ""
    return operation or "SQL"


def pg_query_span(record: Any) -> None:
    """asyncpg query-logger callback: one client span per query, back-dated by its duration.

    asyncpg calls it through `loop.call_soon` with a copy of the caller's context, so the
    current span here is the one the query ran under.
    """
    if not _inside_trace():
        return
    end_ns = time.time_ns()
    params = getattr(record, "conn_params", None)
    database = str(getattr(params, "database", "") or "")
    operation = _sql_operation(record.query)
    attributes: dict[str, str | int] = {
        "db.system.name": "postgresql",
        "db.system": "postgresql",
        "db.operation.name": operation,
        "db.query.text": record.query[:2000],
    }
    if database:
        attributes["db.namespace"] = database
    address = getattr(record, "conn_addr", None)
    if isinstance(address, tuple) and len(address) >= 2:
        attributes["server.address"] = str(address[0])
        attributes["server.port"] = int(address[1])
    span = _tracer().start_span(
        f"{operation} {database}".strip(),
        kind=SpanKind.CLIENT,
        start_time=end_ns - int(record.elapsed * 1e9),
        attributes=attributes,
    )
    if record.exception is not None:
        span.set_status(Status(StatusCode.ERROR, type(record.exception).__name__))
        span.set_attribute("error.type", type(record.exception).__name__)
    span.end(end_time=end_ns)


async def pg_connection_init(conn: asyncpg.Connection) -> None:
    """`init` of a pool: trace every query of the connection (a pool's reset keeps the logger),
    once `instrument_stores` has run (spans are exported)."""
    if _instrumented:
        conn.add_query_logger(pg_query_span)


# -------------------------------------------------------------------------------- MongoDB
# MongoCommandSpans lives in services.kit.mongo_tracing: importing PyMongo costs a quarter of a
# second of CPU at every start, which only the MongoDB services should pay.


def __getattr__(name: str) -> Any:
    if name == "MongoCommandSpans":
        from services.kit.mongo_tracing import MongoCommandSpans

        return MongoCommandSpans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------- Redis


def _instrument_redis() -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=ChildOnlyTracerProvider())


def instrument_stores() -> None:
    """Turn on the store spans of this process (once; `configure_tracing` calls it when spans
    are exported). PostgreSQL pools created afterwards trace their queries; MongoDB and Redis
    clients are traced in a process that has imported their driver by then (a service's
    bootstrap imports its store's driver before it configures tracing): a PostgreSQL service
    does not import PyMongo and Redis only to watch clients it never makes."""
    global _instrumented
    if _instrumented:
        return
    if "pymongo" in sys.modules:
        from pymongo import monitoring

        from services.kit.mongo_tracing import MongoCommandSpans

        monitoring.register(MongoCommandSpans())
    if "redis" in sys.modules:
        _instrument_redis()
    _instrumented = True
