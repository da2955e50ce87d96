"""Use case: apply one event to the board (the consumers' handler calls it)."""

from __future__ import annotations

from services.viewpage.domain.events import BoardEvent, EventMeta
from services.viewpage.domain.projection import plan_for
from services.viewpage.service_layer.ports import Outcome, ReadModelStore


async def project(store: ReadModelStore, event: BoardEvent, meta: EventMeta) -> Outcome:
    """Apply `event`: atomically, at most once in effect, never rolling the board back."""
    return await store.apply(plan_for(event, meta))
