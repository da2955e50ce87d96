"""Serving the identity HTTP API with uvicorn, with the same start/stop discipline as the gRPC
services (services.kit.server): on SIGTERM/SIGINT `/healthz` turns 503, the server keeps serving
for `IDENTITY_DRAIN_S` (the mesh stops routing here), then stops accepting, lets in-flight
requests finish within `IDENTITY_SHUTDOWN_GRACE_S`, then the pool is closed and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from types import TracebackType

import uvicorn

from services.identity.bootstrap import IdentityApp
from services.identity.entrypoints.http import HttpContext, build_app
from services.kit import telemetry

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: IdentityServer drains first, then stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class IdentityServer:
    def __init__(self, app: IdentityApp) -> None:
        self.app = app
        self.settings = app.settings
        self._context: HttpContext | None = None
        self._server: _Uvicorn | None = None
        self._serving: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._stopping: asyncio.Future[None] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.port}"

    async def start(self) -> None:
        s = self.settings
        telemetry.configure_tracing(s)
        await self.app.start()
        self._context = HttpContext(
            deps=self.app.deps,
            tokens=self.app.tokens,
            issuer=s.effective_issuer,
            public_url=s.public_url,
            max_form_bytes=s.max_form_bytes,
            jwks_max_age_s=s.jwks_max_age_s,
            ready=self.app.ready,
        )
        config = uvicorn.Config(
            build_app(self._context),
            log_config=None,  # our JSON logging, configured by the entry point
            access_log=False,  # requests are counted and traced; an access line adds nothing we need
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(s.shutdown_grace_s) or 1,
            limit_concurrency=1000,
        )
        self._server = _Uvicorn(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.http_host, s.http_port))
        sock.set_inheritable(True)
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]), name="identity-http")
        while not self._server.started:
            if self._serving.done():
                await self._serving  # raises what made it fail
                raise RuntimeError("the identity HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info(
            "service started",
            extra={"address": f"{s.http_host}:{self.port}", "port": self.port, "issuer": s.effective_issuer},
        )

    async def stop(self) -> None:
        """Drain, stop the HTTP server (in-flight requests finish), close the app. Safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        s = self.settings
        log.info("service stopping", extra={"drain_s": s.drain_s, "grace_s": s.shutdown_grace_s})
        if self._context is not None:
            self._context.draining = True
            if self._server is not None and self._server.started:
                await asyncio.sleep(s.drain_s)
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            try:
                await self._serving
            except Exception:
                log.exception("the HTTP server stopped with an error")
        if self._socket is not None:
            self._socket.close()
        await self.app.close()
        await asyncio.to_thread(telemetry.flush_tracing)
        log.info("service stopped", extra={"port": self.port})

    async def serve_until_signalled(self) -> None:
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

    async def __aenter__(self) -> IdentityServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
