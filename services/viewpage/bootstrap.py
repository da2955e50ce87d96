"""Composition root of the viewpage service: the one place that knows which adapter serves which port.

`ViewpageApp.start()` opens Redis (making generation 1 live on a fresh store) and starts the
event side in the background: NATS (reconnecting forever), the streams, and the four durable
`viewpage` consumers, which announce every applied change on the `<prefix>:changes` channel
(live pages, services/web). Reads never wait for NATS: with it down, the board is served as it was.
A live generation built by older code (without the materialised entries) or for another time
zone (the days would be wrong) is rebuilt by replay in the background once the consumers run; it
keeps serving meanwhile (see service_layer.rebuild). `stop()` stops the consumers, closes NATS
and Redis. `host()` wraps it in the kit's ServiceHost; `rebuild()` is the `rebuild` command's
work (it needs no gRPC server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc.aio
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from services.kit import errors
from services.kit.events.connection import connect_forever, ensure_streams_forever
from services.kit.events.consumer import EventConsumer
from services.kit.server import ServiceHost
from services.viewpage.adapters import grpc_api
from services.viewpage.adapters.redis_store import LAYOUT, RedisChangeFeed, RedisReadModel
from services.viewpage.adapters.replay import JetStreamHistory
from services.viewpage.entrypoints.event_consumers import BoardEventHandler, LagObserver, board_consumers
from services.viewpage.service_layer.rebuild import RebuildReport
from services.viewpage.service_layer.rebuild import rebuild as rebuild_board
from services.viewpage.settings import ViewpageSettings

log = logging.getLogger(__name__)

SERVICE = "viewpage"
STOP_TIMEOUT_S = 10.0


def model_shape(settings: ViewpageSettings) -> str:
    """What a generation built by this code with these settings looks like (see ensure_initialised)."""
    return f"{LAYOUT}/{settings.time_zone}"


class ViewpageApp:
    def __init__(self, settings: ViewpageSettings, *, on_applied: LagObserver | None = None) -> None:
        self.settings = settings
        self.redis: aioredis.Redis | None = None
        self.store: RedisReadModel | None = None
        self.nats: NATS | None = None
        self.handler: BoardEventHandler | None = None
        self.consumers: list[EventConsumer] = []
        self.events_ready = asyncio.Event()  # set once the consumers run
        self._on_applied = on_applied
        self._events_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.shape_current = True
        self.upgrade: asyncio.Task[None] | None = None  # the rebuild of an outdated board, if any
        self._prune_task: asyncio.Task[None] | None = None

    async def open_store(self) -> RedisReadModel:
        self.redis = aioredis.from_url(self.settings.redis_url, max_connections=64)
        self.store = RedisReadModel(self.redis, self.settings.key_prefix)
        self.shape_current = await self.store.ensure_initialised(model_shape(self.settings))
        return self.store

    async def start(self) -> None:
        store = await self.open_store()
        assert self.redis is not None
        changes = RedisChangeFeed(self.redis, self.settings.key_prefix)  # live pages (services/web)
        self.handler = BoardEventHandler(store, self._on_applied, changes, self.settings.zone)
        self._events_task = asyncio.create_task(self._run_events(), name="viewpage-events")
        self._prune_task = asyncio.create_task(self._prune_forever(), name="viewpage-prune")

    async def _prune_forever(self) -> None:
        """Every replica prunes (it is idempotent and one Redis call); a failure waits for the next turn."""
        assert self.store is not None
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.settings.prune_interval_s)
                return
            try:
                pruned = await self.store.prune(int(time.time() * 1000))
            except errors.Unavailable as exc:
                log.warning("board not pruned: %s", exc)
            else:
                if pruned:
                    log.info("movies without screenings to come taken off the board", extra={"movies": pruned})

    def register(self, server: grpc.aio.Server) -> list[str]:
        if self.store is None:
            raise RuntimeError("the viewpage app is not started")
        return grpc_api.register(server, self.store, self.settings.time_zone)

    async def _run_events(self) -> None:
        assert self.handler is not None
        nc = await connect_forever(
            self.settings.nats_url,
            f"{SERVICE}-{self.settings.service_version}",
            closing=self._closing.is_set,
            logger=log,
        )
        self.nats = nc
        js = nc.jetstream()
        await ensure_streams_forever(js, logger=log)
        self.consumers = board_consumers(js, self.handler, self.settings.consumer_batch)
        self.events_ready.set()
        log.info("viewpage consumers running", extra={"nats": self.settings.nats_url})
        if not self.shape_current:
            self.upgrade = asyncio.create_task(self._rebuild_outdated(js), name="viewpage-upgrade")
        await asyncio.gather(*(c.run() for c in self.consumers))

    async def _rebuild_outdated(self, js: JetStreamContext) -> None:
        assert self.store is not None
        log.warning(
            "the live board was built by older code or for another time zone: rebuilding it from the streams",
            extra={"shape": model_shape(self.settings)},
        )
        try:
            report = await rebuild_board(
                self.store,
                JetStreamHistory(js, batch=self.settings.replay_batch),
                zone=self.settings.zone,
                shape=model_shape(self.settings),
            )
        except errors.FailedPrecondition as exc:  # another replica is at it (or died at it: rebuild --force)
            log.warning("board not rebuilt here: %s", exc)
        except Exception:
            log.exception("rebuilding the outdated board failed (run: python -m services.viewpage rebuild)")
        else:
            self.shape_current = True
            log.info("outdated board rebuilt", extra={"events": report.events, "generation": report.generation})

    async def stop(self) -> None:
        """Stop the consumers, close NATS and Redis; tolerates a half-done start."""
        self._closing.set()
        prune, self._prune_task = self._prune_task, None
        if prune is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(prune, STOP_TIMEOUT_S)  # it returns as soon as closing is set
        upgrade, self.upgrade = self.upgrade, None
        if upgrade is not None and not upgrade.done():
            upgrade.cancel()  # the rebuild abandons its generation; the next start tries again
            with contextlib.suppress(asyncio.CancelledError):
                await upgrade
        for consumer in self.consumers:
            consumer.stop()
        task, self._events_task = self._events_task, None
        if task is not None:
            if not self.events_ready.is_set():
                task.cancel()  # still connecting: nothing to finish
            try:
                await asyncio.wait_for(task, STOP_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("viewpage events stopped with an error")
        nc, self.nats = self.nats, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        client, self.redis = self.redis, None
        if client is not None:
            await client.aclose()
        log.info("viewpage resources closed")

    def host(self) -> ServiceHost:
        """A ServiceHost serving this app: start before serving, stop after draining."""
        return ServiceHost(
            self.settings,
            self.register,
            public_methods=grpc_api.PUBLIC_METHODS,
            on_startup=[self.start],
            on_shutdown=[self.stop],
        )


async def rebuild(settings: ViewpageSettings, *, force: bool = False) -> RebuildReport:
    """Replay every stream into a fresh generation and switch to it (the `rebuild` command)."""
    client = aioredis.from_url(settings.redis_url)
    closing = asyncio.Event()
    nc = await connect_forever(settings.nats_url, f"{SERVICE}-rebuild", closing=closing.is_set, logger=log)
    try:
        store = RedisReadModel(client, settings.key_prefix)
        await store.ensure_initialised(model_shape(settings))
        history = JetStreamHistory(nc.jetstream(), batch=settings.replay_batch)
        return await rebuild_board(store, history, force=force, zone=settings.zone, shape=model_shape(settings))
    finally:
        closing.set()
        await nc.close()
        await client.aclose()
