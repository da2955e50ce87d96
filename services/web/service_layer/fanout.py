"""Fanning the board's changes out to every open page, without letting a slow page hold anyone up.

Every notice gets a sequence number, and the last few hundred are kept: a page that reconnects
with the `Last-Event-ID` it last saw (EventSource sends it by itself) gets exactly what it
missed, or one `RESYNC` (refetch the whole board) when that is no longer known — another
process (a restart, another replica: the id carries the process's epoch) or too long ago.

Each stream holds a `Subscription`, a small bounded queue. Publishing never waits: a page whose
queue is full has fallen behind, so its backlog collapses into one RESYNC, which is all it needs
to be right again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class BoardChange:
    """An applied change of the public board: the movie and/or screening to refetch ("" = unknown)."""

    movie_id: str
    screening_id: str = ""


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


RESYNC: Final = _Marker("RESYNC")  # changes may have been missed: refetch everything
END: Final = _Marker("END")  # the service is stopping: end the stream (the page reconnects)
Notice = BoardChange | _Marker


@dataclass(frozen=True)
class Sequenced:
    seq: int  # 0 for END, which is not part of the sequence
    notice: Notice


class TooManyStreams(Exception):
    """Every stream slot is taken (or the service is stopping): come back later."""


class Subscription:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Sequenced] = asyncio.Queue(maxsize=size)

    def offer(self, item: Sequenced) -> None:
        """Queue `item`; when full, collapse the backlog into one RESYNC (END always gets in)."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(item if item.notice is END else Sequenced(item.seq, RESYNC))

    async def next(self) -> Sequenced:
        return await self.queue.get()


class ChangeFanout:
    def __init__(self, max_subscribers: int, queue_size: int, history: int = 256) -> None:
        self._max = max_subscribers
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._history: deque[Sequenced] = deque(maxlen=history)
        self._seq = 0
        self._closed = False
        self.epoch = secrets.token_hex(4)  # names this process's sequence

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    @property
    def position(self) -> str:
        """The id of the newest notice (where a new page starts)."""
        return self.event_id(self._seq)

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        """A new stream; with the id a page last saw, it starts with what the page missed."""
        if self._closed or len(self._subscriptions) >= self._max:
            raise TooManyStreams("no live-update stream available")
        subscription = Subscription(self._queue_size)
        if last_event_id:
            for item in self._missed_since(last_event_id):
                subscription.offer(item)
        self._subscriptions.add(subscription)
        return subscription

    def _missed_since(self, last_event_id: str) -> list[Sequenced]:
        epoch, _, number = last_event_id.strip().partition("-")
        if epoch != self.epoch or not number.isdigit() or int(number) > self._seq:
            return [Sequenced(self._seq, RESYNC)]
        seen = int(number)
        oldest = self._history[0].seq if self._history else self._seq + 1
        if seen + 1 < oldest and seen < self._seq:
            return [Sequenced(self._seq, RESYNC)]  # some of it is no longer kept
        return [item for item in self._history if item.seq > seen]

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, notice: Notice) -> None:
        self._seq += 1
        item = Sequenced(self._seq, notice)
        self._history.append(item)
        for subscription in list(self._subscriptions):
            subscription.offer(item)

    def close(self) -> None:
        """End every stream and take no new ones (the service is stopping)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.offer(Sequenced(0, END))
