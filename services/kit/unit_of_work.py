"""The unit-of-work template every PostgreSQL-backed service's use cases talk to.

`async with uow: ...; await uow.commit()` is one transaction; leaving without `commit()`
rolls back. On commit, the domain events raised by every aggregate the unit of work handed
out go to the outbox first, then the repository flushes its changes, then the transaction
commits — so an event is stored exactly when the state that raised it is. Pure Python: the
service's ports subclass it and name their repositories; adapters implement the rest.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol, Self


class RaisesEvents(Protocol):
    events: list[Any]


class UnitOfWork(abc.ABC):
    """Subclasses say where the aggregates are (`_seen`, `_flush`) and which outbox takes their
    events (`_outbox_add`); adapters implement `_begin`, `_commit` and `rollback` (a no-op
    after commit: `__aexit__` always calls it)."""

    async def __aenter__(self) -> Self:
        await self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.rollback()

    async def commit(self) -> None:
        events = list(self.collect_new_events())
        for event in events:
            await self._outbox_add(event)
        await self._flush()
        await self._commit()
        self._committed(events)

    def _committed(self, events: list[Any]) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Called with the events of a transaction once it committed (e.g. to count sales);
        never for one that rolled back. A no-op unless a subclass says otherwise."""

    def collect_new_events(self) -> Iterator[Any]:
        for aggregate in self._seen():
            while aggregate.events:
                yield aggregate.events.pop(0)

    @abc.abstractmethod
    def _seen(self) -> Iterable[RaisesEvents]: ...

    @abc.abstractmethod
    async def _flush(self) -> None: ...

    @abc.abstractmethod
    async def _outbox_add(self, event: Any) -> None: ...

    @abc.abstractmethod
    async def _begin(self) -> None: ...

    @abc.abstractmethod
    async def _commit(self) -> None: ...

    @abc.abstractmethod
    async def rollback(self) -> None: ...
