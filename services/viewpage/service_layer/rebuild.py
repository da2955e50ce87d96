"""Use case: rebuild the whole board by replaying the event history into a fresh generation.

1. A new, empty generation is opened; from that instant every live apply also writes to it
   (the store's apply script does both in one step), so nothing that happens during the
   rebuild is missed, whichever side sees it first (applies are idempotent and order-safe).
2. The history is replayed from the start of each stream to its end as of now.
3. The new generation becomes live in one atomic step: a read runs entirely against the old
   generation or entirely against the new one, never a mix, and never fails.
4. The old generation is deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, tzinfo

from services.viewpage.domain.projection import plan_for
from services.viewpage.service_layer.ports import EventHistory, ReadModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildReport:
    generation: int
    replaced: int
    events: int
    deleted_keys: int
    seconds: float


async def rebuild(
    store: ReadModelStore, history: EventHistory, *, force: bool = False, zone: tzinfo = UTC, shape: str = ""
) -> RebuildReport:
    started = time.perf_counter()
    generation = await store.begin_generation(force=force)
    log.info("rebuild started", extra={"generation": generation})
    events = 0
    try:
        async for batch in history.replay():
            await store.apply_many([plan_for(event, meta, zone) for event, meta in batch], generation)
            events += len(batch)
        replaced = await store.switch_to(generation, shape)
    except BaseException:
        await store.abandon(generation)
        raise
    deleted = await store.drop_generation(replaced)
    report = RebuildReport(generation, replaced, events, deleted, time.perf_counter() - started)
    log.info(
        "rebuild done",
        extra={
            "generation": generation,
            "replaced": replaced,
            "events": events,
            "deleted_keys": deleted,
            "seconds": round(report.seconds, 3),
        },
    )
    return report
