"""What the catalog's use cases are given by the composition root (services.movie.bootstrap)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo

from services.movie.service_layer.ports import Clock, HallRepository, MovieRepository, ScreeningRepository

# Ids derived from a caller's request id (AIP-155): a retried create lands on the same id.
REQUEST_NAMESPACE = uuid.UUID("5b0c1b7e-2f0a-4c43-9d0b-6a1f6f1d3c21")


def new_id() -> str:
    return str(uuid.uuid4())


def id_for_request(kind: str, idempotency_key: str) -> str:
    """A new random id, or the id a request with this key got (or will get) the first time."""
    if not idempotency_key:
        return new_id()
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"{kind}:{idempotency_key}"))


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class CatalogDependencies:
    movies: MovieRepository
    screenings: ScreeningRepository
    halls: HallRepository
    clock: Clock
    cleaning_gap: timedelta = timedelta(minutes=15)
    claim_timeout: timedelta = timedelta(seconds=30)
    time_zone: tzinfo | None = None  # the cinema's, for "showing on a date"; None = UTC
    default_page_size: int = 50
    # Called after a write that recorded events, so the outbox relay publishes now, not at its next poll.
    events_written: Callable[[], None] = field(default=_nothing)
