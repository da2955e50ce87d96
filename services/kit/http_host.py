"""Serving an HTTP (ASGI) service with uvicorn under the same start/stop discipline as the gRPC
services (services.kit.server): on SIGTERM/SIGINT the service reports itself draining (its
`/healthz` turns 503) and keeps serving for `<PREFIX>_DRAIN_S` while the mesh stops routing here,
then stops accepting, lets in-flight requests finish within `<PREFIX>_SHUTDOWN_GRACE_S`, closes
what it opened and the process exits 0.

A service subclasses `HttpHost` and fills in the hooks: `open` (start the application, return the
ASGI app), `begin_drain`, `before_stop_serving` (optional) and `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol, Self

import uvicorn

from services.kit.aio import wait_event

log = logging.getLogger(__name__)


class HttpHostSettings(Protocol):
    http_host: str
    http_port: int
    drain_s: float
    shutdown_grace_s: float


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the host drains first, then stops it.

    uvicorn's main loop wakes every 0.1 s to see whether it should exit and, every tenth time,
    to refresh the Date header: ten wake-ups a second per idle process, a visible part of an idle
    stack's cost (issue 14). Here it wakes once a second for the Date header and at once when
    the host asks it to exit.
    """

    TICK_S = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        counter = 0  # uvicorn's on_tick refreshes the Date header when counter % 10 == 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            await wait_event(self._exit_requested, self.TICK_S)


class HttpHost:
    name = "http"

    def __init__(self, settings: HttpHostSettings, *, limit_concurrency: int = 1000) -> None:
        self.settings = settings
        self._limit_concurrency = limit_concurrency
        self._server: _Uvicorn | None = None
        self._serving: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._stopping: asyncio.Future[None] | None = None
        self.port = 0

    # --- hooks ------------------------------------------------------------------------------

    async def open(self) -> Any:
        """Start the application (stores, keys, subscriptions) and return its ASGI app."""
        raise NotImplementedError

    def begin_drain(self) -> None:
        """From now on `/healthz` answers 503."""
        raise NotImplementedError

    async def before_stop_serving(self) -> None:
        """After the drain, before uvicorn stops (e.g. end long-lived streams)."""

    async def close(self) -> None:
        """Close what `open` opened."""
        raise NotImplementedError

    def started_fields(self) -> dict[str, Any]:
        """Extra fields of the "service started" log line."""
        return {}

    # --- the discipline ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.port}"

    async def start(self) -> None:
        s = self.settings
        config = uvicorn.Config(
            await self.open(),
            log_config=None,  # our JSON logging, configured by the entry point
            access_log=False,  # Envoy writes the access log; the service counts and traces requests
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(s.shutdown_grace_s) or 1,
            limit_concurrency=self._limit_concurrency,
        )
        self._server = _Uvicorn(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.http_host, s.http_port))
        sock.set_inheritable(True)
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"{self.name}-http")
        while not self._server.started:
            if self._serving.done():
                await self._serving  # raises what made it fail
                raise RuntimeError(f"the {self.name} HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info(
            "service started",
            extra={"address": f"{s.http_host}:{self.port}", "port": self.port, **self.started_fields()},
        )

    async def stop(self) -> None:
        """Drain, stop the HTTP server (in-flight requests finish), close. Safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        s = self.settings
        log.info("service stopping", extra={"drain_s": s.drain_s, "grace_s": s.shutdown_grace_s})
        if self._server is not None:
            self.begin_drain()
            if self._server.started:
                await asyncio.sleep(s.drain_s)
        await self.before_stop_serving()
        if self._server is not None and self._serving is not None:
            self._server.request_exit()
            try:
                await self._serving
            except Exception:
                log.exception("the HTTP server stopped with an error")
        if self._socket is not None:
            self._socket.close()
        await self.close()
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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
