"""Composition root of the web service: the one place that knows which adapter serves which port.

`WebApp.start()` builds the page once (services.web.page) and follows the board's changes in the
background (Redis Pub/Sub -> fan-out to the open pages); the page itself is served whether Redis
answers or not (it only loses its live updates). `stop()` ends the streams and the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.kit.auth import JwtVerifier
from services.web.adapters.mesh_sources import HttpMeshSources, JaegerTraces
from services.web.adapters.redis_changes import RedisChangeSource
from services.web.page import Page, build_page
from services.web.service_layer.fanout import ChangeFanout
from services.web.service_layer.mesh import MeshSampler
from services.web.settings import WebSettings

log = logging.getLogger(__name__)


class WebApp:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.fanout = ChangeFanout(settings.max_streams, settings.stream_queue)
        self.changes = RedisChangeSource(settings.redis_url, settings.changes_channel, self.fanout)
        self._page: Page | None = None
        self._follower: asyncio.Task[None] | None = None
        # the mesh page (managers): one sampler for every open page, asleep while none is
        self.mesh_sources = HttpMeshSources(
            settings.mesh_envoy_admin_url, settings.mesh_nats_monitor_url, settings.mesh_metrics_urls
        )
        self.mesh = MeshSampler(self.mesh_sources, settings.mesh_sample_s, settings.mesh_idle_after_s)
        self.traces = JaegerTraces(settings.mesh_jaeger_url)
        self.verifier = JwtVerifier.from_settings(settings)
        self._mesh_page: Page | None = None

    @property
    def page(self) -> Page:
        if self._page is None:
            raise RuntimeError("the web app is not started")
        return self._page

    @property
    def mesh_page(self) -> Page:
        if self._mesh_page is None:
            raise RuntimeError("the web app is not started")
        return self._mesh_page

    async def start(self) -> None:
        self._page = build_page()
        self._mesh_page = build_page("mesh.html", "mesh.css", "mesh.js")
        self.mesh.start()
        self._follower = asyncio.create_task(self.changes.run(), name="web-board-changes")

    @property
    def live(self) -> bool:
        """Whether the board's changes are followed right now (pages get live updates)."""
        return self.changes.connected.is_set()

    def end_streams(self) -> None:
        self.fanout.close()

    async def stop(self) -> None:
        self.fanout.close()
        task, self._follower = self._follower, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.mesh.stop()
        await self.mesh_sources.close()
        await self.traces.close()
        log.info("web resources closed")
