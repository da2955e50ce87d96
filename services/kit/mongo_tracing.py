"""Client spans for MongoDB (PyMongo's command monitoring); see services.kit.store_tracing.

Apart from store_tracing so that only a process with MongoDB clients imports PyMongo.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pymongo import monitoring

from services.kit.store_tracing import _inside_trace, _tracer


class MongoCommandSpans(monitoring.CommandListener):
    """Opens a client span when PyMongo starts a command and ends it on the reply."""

    def __init__(self) -> None:
        self._spans: dict[tuple[Any, int], Span] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not _inside_trace():
            return
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        attributes: dict[str, str | int] = {
            "db.system.name": "mongodb",
            "db.system": "mongodb",
            "db.operation.name": event.command_name,
            "db.namespace": event.database_name,
        }
        if collection:
            attributes["db.collection.name"] = collection
        host, port = event.connection_id[0], event.connection_id[1]
        attributes["server.address"] = str(host)
        if port is not None:
            attributes["server.port"] = int(port)
        name = f"{event.command_name} {event.database_name}" + (f".{collection}" if collection else "")
        span = _tracer().start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        self._spans[(event.connection_id, event.request_id)] = span

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        span = self._spans.pop((event.connection_id, event.request_id), None)
        if span is not None:
            span.end()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        span = self._spans.pop((event.connection_id, event.request_id), None)
        if span is not None:
            code = event.failure.get("codeName") or event.failure.get("code") or "failed"
            span.set_status(Status(StatusCode.ERROR, str(code)))
            span.set_attribute("error.type", str(code))
            span.end()
