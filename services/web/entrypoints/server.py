"""Serving the web service (services.kit.http_host: on SIGTERM/SIGINT `/healthz` turns 503 and
the server keeps serving for `WEB_DRAIN_S`, then every live-update stream is ended (browsers
reconnect elsewhere), the server stops accepting, in-flight requests get `WEB_SHUTDOWN_GRACE_S`,
and the process exits 0).
"""

from __future__ import annotations

from typing import Any

from services.kit.http_host import HttpHost
from services.web.bootstrap import WebApp
from services.web.entrypoints.http import HttpState, build_app
from services.web.settings import WebSettings


class WebServer(HttpHost):
    settings: WebSettings
    name = "web"

    def __init__(self, app: WebApp) -> None:
        # the streams, and room for pages and probes
        super().__init__(app.settings, limit_concurrency=app.settings.max_streams + 200)
        self.app = app
        self._state: HttpState | None = None

    async def open(self) -> Any:
        await self.app.start()
        self._state = HttpState(self.app)
        return build_app(self._state)

    def begin_drain(self) -> None:
        if self._state is not None:
            self._state.draining = True

    async def before_stop_serving(self) -> None:
        self.app.end_streams()  # open streams end now instead of holding the shutdown up

    async def close(self) -> None:
        await self.app.stop()

    def started_fields(self) -> dict[str, Any]:
        return {"changes": self.app.settings.changes_channel}
