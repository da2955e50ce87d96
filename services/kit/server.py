"""Running a Cinema gRPC service: interceptors, health, reflection, metrics and graceful shutdown.

    def main() -> None:
        settings = ReservationSettings()
        run_service(settings, register=bootstrap.register, public_methods=[...],
                    on_startup=[bootstrap.open_pools], on_shutdown=[bootstrap.close_pools])

`register(server)` adds the servicers (it may be async) and returns the full names of the
services it added; they get health statuses and appear in reflection. Start-up hooks run
before `register`, so the servicers can use what they opened.

Interceptors, outermost first: admission control (past capacity, refuse at once with a retry
hint: services.kit.admission), tracing (a span around everything), correlation (the
request's reservation/review id on its logs and span), metrics (sees the final code, auth
failures included), auth (sets the current caller), error mapping (turns the handler's
exceptions into statuses).

On SIGTERM/SIGINT: every health status turns NOT_SERVING, the server keeps serving for
`drain_s` (the mesh notices and stops routing here), then `server.stop(shutdown_grace_s)`
lets in-flight RPCs finish, then the shutdown hooks run (in reverse order) and the process
exits 0.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer as AioHealthServicer
from grpc_reflection.v1alpha import reflection

from services.kit import telemetry, validation
from services.kit.admission import AdmissionControl, AdmissionSettings
from services.kit.auth import AuthInterceptor, JwtVerifier
from services.kit.correlation import CorrelationInterceptor
from services.kit.grpc_errors import ErrorMappingInterceptor
from services.kit.logging import configure_logging
from services.kit.metrics import MetricsEndpoint, MetricsInterceptor, start_metrics_endpoint
from services.kit.settings import KitSettings

log = logging.getLogger(__name__)

Register = Callable[[grpc.aio.Server], Iterable[str] | Awaitable[Iterable[str]]]
Hook = Callable[[], Awaitable[None]]


def request_types(service_names: Iterable[str]) -> list[Descriptor]:
    """The request message types of these gRPC services (by full name, from the default pool)."""
    pool = descriptor_pool.Default()
    types: list[Descriptor] = []
    for name in service_names:
        try:
            service = pool.FindServiceByName(name)
        except KeyError:  # not generated into the default pool: nothing to prepare
            continue
        types.extend(method.input_type for method in service.methods)
    return types


def admission_settings(settings: KitSettings) -> AdmissionSettings:
    return AdmissionSettings(
        max_in_flight=settings.max_in_flight,
        queue_s=settings.admission_queue_ms / 1000,
        burst_queue_s=settings.admission_burst_queue_ms / 1000,
        target_s=settings.admission_target_ms / 1000,
        retry_after_s=settings.admission_retry_after_ms / 1000,
    )


class ServiceHost:
    """One gRPC server with the kit around it; `start()`, then `stop()` (or use `async with`)."""

    def __init__(
        self,
        settings: KitSettings,
        register: Register,
        *,
        public_methods: Iterable[str] = (),
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        verifier: JwtVerifier | None = None,
        extra_interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> None:
        self.settings = settings
        self._register = register
        self._public_methods = tuple(public_methods)
        self._on_startup = tuple(on_startup)
        self._on_shutdown = tuple(on_shutdown)
        self._verifier = verifier or JwtVerifier.from_settings(settings)
        self._extra_interceptors = tuple(extra_interceptors)
        self._server: grpc.aio.Server | None = None
        self._health = AioHealthServicer()
        self._metrics: MetricsEndpoint | None = None
        self._service_names: tuple[str, ...] = ()
        self._port = 0
        self._stopping: asyncio.Future[None] | None = None
        self._started = False
        self._admission: AdmissionControl | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port (the real one when the settings asked for 0)."""
        return self._port

    @property
    def address(self) -> str:
        return f"{self.settings.grpc_host}:{self._port}"

    @property
    def metrics_port(self) -> int | None:
        return self._metrics.port if self._metrics else None

    @property
    def service_names(self) -> tuple[str, ...]:
        return self._service_names

    @property
    def health_servicer(self) -> AioHealthServicer:
        return self._health

    async def start(self) -> None:
        settings = self.settings
        telemetry.configure_tracing(settings)
        for hook in self._on_startup:
            await hook()
        self._admission = AdmissionControl(admission_settings(settings))
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [
            # Outermost: a refusal past capacity must cost no span, no token check, no log line.
            self._admission,
            telemetry.server_interceptor(),
            CorrelationInterceptor(),
            MetricsInterceptor(),
            AuthInterceptor(self._verifier, self._public_methods),
            ErrorMappingInterceptor(),
            *self._extra_interceptors,
        ]
        server = grpc.aio.server(interceptors=interceptors)
        self._server = server
        registered = self._register(server)
        if inspect.isawaitable(registered):
            registered = await registered
        self._service_names = tuple(registered)
        # The request types' validation plans (and protovalidate, where one needs it) before SERVING.
        validation.prepare(request_types(self._service_names))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self._port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
        if self._port == 0:
            raise RuntimeError(f"could not bind gRPC port {settings.grpc_host}:{settings.grpc_port}")
        if settings.metrics_enabled:
            self._metrics = await asyncio.to_thread(
                start_metrics_endpoint, settings.metrics_host, settings.metrics_port
            )
        await self._health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        # The verification keys before SERVING: the first caller should not wait for the JWKS
        # fetch (behind a mesh's short per-try timeout it would fail). Bounded: an identity that
        # is down must not keep the service from starting; requests retry the load.
        try:
            async with asyncio.timeout(settings.jwks_warm_timeout_s):
                await self._verifier.warm()
        except TimeoutError:
            log.warning("JWKS not loaded at start-up; the first requests will load it")
        await server.start()
        self._started = True
        for name in ("", *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "service started",
            extra={
                "address": self.address,
                "port": self._port,
                "version": settings.service_version,
                "metrics_port": self.metrics_port,
                "services": list(self._service_names),
            },
        )

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING, drain, stop with grace, shutdown hooks. Safe to call twice.

        Shutdown hooks run even when start-up failed half-way, so they must tolerate closing
        what was never opened.
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        settings = self.settings
        log.info("service stopping", extra={"drain_s": settings.drain_s, "grace_s": settings.shutdown_grace_s})
        await self._health.enter_graceful_shutdown()
        if self._server is not None and self._started:
            # Keep answering while the mesh notices NOT_SERVING and moves new requests elsewhere.
            await asyncio.sleep(settings.drain_s)
            await self._server.stop(settings.shutdown_grace_s)
        elif self._server is not None:
            await self._server.stop(None)
        for hook in reversed(self._on_shutdown):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed", extra={"hook": getattr(hook, "__qualname__", repr(hook))})
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.stop)
        await asyncio.to_thread(telemetry.flush_tracing)
        log.info("service stopped", extra={"address": self.address})

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def serve_until_signalled(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()

        def on_signal(signum: signal.Signals) -> None:
            log.info("signal received", extra={"signal": signum.name})
            signalled.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await self.start()
            await signalled.wait()
        finally:
            await self.stop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def __aenter__(self) -> ServiceHost:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve(settings: KitSettings, register: Register, **options: Any) -> None:
    """Async entry point: run a `ServiceHost` until a termination signal (see `ServiceHost` for options)."""
    await ServiceHost(settings, register, **options).serve_until_signalled()


def run_service(
    settings: KitSettings,
    register: Register,
    *,
    public_methods: Iterable[str] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> NoReturn:
    """Process entry point: JSON logs, uvloop when installed, serve until signalled, exit 0."""
    configure_logging(settings.service_name, settings.log_level)
    main = serve(settings, register, public_methods=public_methods, on_startup=on_startup, on_shutdown=on_shutdown)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
    sys.exit(0)
