"""Prometheus metrics: RED metrics per RPC and the `/metrics` HTTP endpoint.

Series follow the go-grpc-prometheus names that dashboards already know:
`grpc_server_started_total`, `grpc_server_handled_total{grpc_code}` and the
`grpc_server_handling_seconds` histogram, labelled by gRPC service, method and type.
The endpoint is prometheus_client's own HTTP server, running in a daemon thread (it only
renders the registry, so it never touches the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from services.kit.rpc_wrapping import wrap_handler

log = logging.getLogger(__name__)

_LABELS = ("grpc_type", "grpc_service", "grpc_method")

STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
HANDLED = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_LABELS, "grpc_code"))
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC on the server (whole stream for streaming RPCs).",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def split_method(full_method: str) -> tuple[str, str]:
    """`/cinema.reservation.v1.ReservationService/CreateReservation` -> (service, method)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return (service or "unknown", method or "unknown")


def _rpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _final_code(context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions keep the raw integer
        return next((c for c in grpc.StatusCode if c.value[0] == code), default)
    return default


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Counts every RPC and times it; the code is the one the client will see."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        labels = (_rpc_type(handler), service, method)

        @asynccontextmanager
        async def measuring(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            STARTED.labels(*labels).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                yield
                code = _final_code(context, grpc.StatusCode.OK)
            except grpc.aio.AbortError:
                code = _final_code(context, grpc.StatusCode.UNKNOWN)
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away or the server is stopping
                raise
            except Exception:
                code = grpc.StatusCode.UNKNOWN  # nothing below mapped it: grpc reports UNKNOWN
                raise
            finally:
                HANDLED.labels(*labels, code.name).inc()
                HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - start)

        return wrap_handler(handler, measuring)


@dataclass
class MetricsEndpoint:
    """The running `/metrics` HTTP server; `port` is the bound port (useful when asked for 0)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        """Stop serving (blocking for up to one poll interval: call through `asyncio.to_thread`)."""
        self.server.shutdown()
        self.server.server_close()


def start_metrics_endpoint(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> MetricsEndpoint:
    """Serve `/metrics` on host:port in a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    endpoint = MetricsEndpoint(server=server, thread=thread)
    log.info("metrics endpoint listening", extra={"metrics_address": f"{host}:{endpoint.port}"})
    return endpoint
