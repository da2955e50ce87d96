"""Serving the web service with uvicorn, with the same start/stop discipline as the other services:
on SIGTERM/SIGINT `/healthz` turns 503 and the server keeps serving for `WEB_DRAIN_S` (the mesh
stops routing here), then every live-update stream is ended (browsers reconnect elsewhere),
the server stops accepting, in-flight requests get `WEB_SHUTDOWN_GRACE_S`, and the process exits 0.
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

from services.web.bootstrap import WebApp
from services.web.entrypoints.http import HttpState, build_app

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: WebServer drains first, then stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    def __init__(self, app: WebApp) -> None:
        self.app = app
        self.settings = app.settings
        self._state: HttpState | None = None
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
        await self.app.start()
        self._state = HttpState(self.app)
        config = uvicorn.Config(
            build_app(self._state),
            log_config=None,  # our JSON logging, configured by the entry point
            access_log=False,  # Envoy writes the access log; we count requests
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(s.shutdown_grace_s) or 1,
            limit_concurrency=s.max_streams + 200,  # the streams, and room for pages and probes
        )
        self._server = _Uvicorn(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.http_host, s.http_port))
        sock.set_inheritable(True)
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]), name="web-http")
        while not self._server.started:
            if self._serving.done():
                await self._serving  # raises what made it fail
                raise RuntimeError("the web HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info(
            "service started",
            extra={"address": f"{s.http_host}:{self.port}", "port": self.port, "changes": s.changes_channel},
        )

    async def stop(self) -> None:
        """Drain, end the streams, stop the HTTP server, close the app. Safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        s = self.settings
        log.info("service stopping", extra={"drain_s": s.drain_s, "grace_s": s.shutdown_grace_s})
        if self._state is not None:
            self._state.draining = True
            if self._server is not None and self._server.started:
                await asyncio.sleep(s.drain_s)
        self.app.end_streams()  # open streams end now instead of holding the shutdown up
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            try:
                await self._serving
            except Exception:
                log.exception("the HTTP server stopped with an error")
        if self._socket is not None:
            self._socket.close()
        await self.app.stop()
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

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
