"""The deletion sweeper: finishes movie deletions that a crash cut short.

Deleting a movie marks it deleted and then cancels its future screenings one by one; if the
process dies in between, the movie keeps a `screenings_to_cancel` flag. This loop (every
`interval_s`, and once at start-up) cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging

from pymongo.errors import PyMongoError

from services.kit.aio import wait_event
from services.movie.service_layer.catalog import sweep_deleted_movies
from services.movie.service_layer.dependencies import CatalogDependencies

log = logging.getLogger(__name__)


class DeletionSweeper:
    def __init__(self, deps: CatalogDependencies, interval_s: float) -> None:
        self._deps = deps
        self._interval_s = interval_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await sweep_deleted_movies(self._deps)
            except asyncio.CancelledError:
                raise
            except (PyMongoError, OSError) as exc:
                log.warning("deletion sweep: store unavailable (%s); retrying", exc)
            except Exception:
                log.exception("deletion sweep failed; retrying")
            await wait_event(self._stopping, self._interval_s)
