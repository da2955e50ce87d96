"""Use case: apply one event to the board (the consumers' handler calls it), and tell live pages."""

from __future__ import annotations

from datetime import UTC, tzinfo

from services.viewpage.domain.events import BoardEvent, EventMeta
from services.viewpage.domain.projection import change_of, plan_for
from services.viewpage.service_layer.ports import BoardChangeFeed, Outcome, ReadModelStore


async def project(
    store: ReadModelStore,
    event: BoardEvent,
    meta: EventMeta,
    changes: BoardChangeFeed | None = None,
    zone: tzinfo = UTC,
) -> Outcome:
    """Apply `event`: atomically, at most once in effect, never rolling the board back.

    Only an event that changed the board is announced on `changes` (a redelivery is stale).
    """
    outcome = await store.apply(plan_for(event, meta, zone))
    if outcome == "applied" and changes is not None and (change := change_of(event)) is not None:
        await changes.publish(change)
    return outcome
