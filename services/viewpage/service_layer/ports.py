"""Ports of the viewpage use cases: the read model store and the event history to replay.

The read model lives in *generations* (key spaces): one is live and serves reads; a rebuild
fills a new one from the history while the live one keeps serving, then switches atomically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services.viewpage.domain.events import BoardEvent, EventMeta
from services.viewpage.domain.projection import BoardChange, Plan

Outcome = Literal["applied", "stale"]  # stale: the aggregate already had this version or a newer one
Document = dict[str, Any]


@dataclass(frozen=True)
class BoardDocuments:
    """Everything GetBoard needs, read in one round trip."""

    movies: dict[str, Document]
    screenings: dict[str, Document]
    taken: dict[str, int]
    reviews: dict[str, int]
    as_of_ms: int


@dataclass(frozen=True)
class SalesDocuments:
    """What the manager's sales add up, read in one round trip: the screenings asked for (one, or a
    movie's), each with the documents of its reservations; `movie` is None when not asked for or
    unknown, and a screening the board has not seen is left out."""

    movie: Document | None
    screenings: dict[str, Document]
    reservations: dict[str, list[Document]]  # screening id -> its reservations' documents
    as_of_ms: int


@dataclass(frozen=True)
class MovieDocuments:
    movie: Document
    screenings: dict[str, Document]
    taken: dict[str, int]
    review_count: int
    rating_sum: int


@dataclass(frozen=True)
class BoardSlice:
    """A page of the board as the store keeps it, ready to send.

    `movies` is opaque here: the entries as the contract's repeated `movies` field already on the
    wire (the store materialises them when events arrive, so a read only slices). `last` is the
    index position to continue after; `more` says whether the index holds anything after it.
    """

    movies: bytes
    count: int
    last: str
    more: bool
    as_of_ms: int
    days: list[str]


@dataclass(frozen=True)
class CustomerPage:
    reservations: list[tuple[str, Document]] = field(default_factory=list)
    more: bool = False


class ReadModelStore(Protocol):
    async def apply(self, plan: Plan, generation: int | None = None) -> Outcome:
        """Apply atomically to the live generation (and to one being rebuilt), or to `generation`."""
        ...

    async def apply_many(self, plans: Sequence[Plan], generation: int) -> None:
        """Apply in order to `generation` (one round trip per batch): the replay's path."""
        ...

    async def board_documents(self) -> BoardDocuments:
        """Every document and counter of the live generation (O(catalog): checks and tools, not reads)."""
        ...

    async def board_slice(
        self,
        *,
        genre: str,
        after: str,
        size: int,
        now_ms: int,
        day: str = "",
        scan_limit: int,
        today: str = "",
        movie_id: str = "",
        max_days: int = 31,
    ) -> BoardSlice:
        """Up to `size` movies (of the genre key `genre` if given) after position `after` with screenings after `now_ms`
        (on `day` if given), looking at no more than `scan_limit` index positions; or only
        `movie_id` if given. `days`: the days with screenings from `today` on, at most `max_days`."""
        ...

    async def prune(self, now_ms: int, limit: int = 500) -> int:
        """Take movies whose screenings have all started off the all-days indexes; returns how many."""
        ...

    async def movie_entry(self, movie_id: str, now_ms: int) -> bytes | None:
        """One listed movie's entry (`BoardMovie` on the wire, screenings after `now_ms`), or None."""
        ...

    async def movie_documents(self, movie_id: str) -> MovieDocuments | None: ...

    async def customer_page(self, customer_id: str, offset: int, limit: int) -> CustomerPage: ...

    async def sales_documents(self, *, screening_id: str = "", movie_id: str = "") -> SalesDocuments:
        """The documents of one screening's sales, or of every screening of a movie."""
        ...

    async def live_generation(self) -> int: ...

    async def begin_generation(self, *, force: bool = False) -> int:
        """A fresh, empty generation that live appliers also write to from now on."""
        ...

    async def switch_to(self, generation: int, shape: str = "") -> int:
        """Make `generation` live (atomically), built as `shape`; returns the one it replaced."""
        ...

    async def abandon(self, generation: int) -> None:
        """Stop writing to a generation that will not go live, and delete it."""
        ...

    async def drop_generation(self, generation: int) -> int:
        """Delete a generation's keys; returns how many."""
        ...


class BoardChangeFeed(Protocol):
    async def publish(self, change: BoardChange) -> None:
        """Tell live pages what changed; best effort (never raises: a page also refetches on reconnect)."""
        ...


class EventHistory(Protocol):
    def replay(self) -> AsyncIterator[Sequence[tuple[BoardEvent, EventMeta]]]:
        """Every board event from the start of each stream up to its end as of now, in batches."""
        ...
