"""What PostgreSQL's backends are doing during the window, sampled like an active-session history.

A CPU profile of a service shows where it burns CPU, not where its requests wait. Sampling
`pg_stat_activity` every few milliseconds shows, per database (one per service), how many
sessions on average are running a query (and on what they wait: WAL fsync, a lock, I/O), are
*idle in transaction* (the service holds a transaction open while it does something else, e.g.
waits for another call), or idle. Summed over the window this says which part of a hop's time
is spent in or around the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

QUERY = """
SELECT datname, state, coalesce(wait_event_type || ':' || wait_event, 'CPU') AS waiting
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname IS NOT NULL
"""


@dataclass
class SessionHistory:
    """Counts of (database, state) per sample; `average_sessions` divides by the samples taken."""

    samples: int = 0
    states: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, rows: list[tuple[str, str, str]]) -> None:
        self.samples += 1
        for database, state, waiting in rows:
            label = f"active ({waiting})" if state == "active" else state or "unknown"
            self.states[(database, label)] += 1

    def average_sessions(self) -> dict[str, dict[str, float]]:
        """database -> state -> sessions in that state on average over the window."""
        out: dict[str, dict[str, float]] = {}
        if not self.samples:
            return out
        for (database, state), count in sorted(self.states.items()):
            out.setdefault(database, {})[state] = count / self.samples
        return out


@dataclass
class PgActivitySampler:
    admin_url: str
    interval_s: float = 0.02
    history: SessionHistory = field(default_factory=SessionHistory)
    _task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            while True:
                rows = await conn.fetch(QUERY)
                self.history.add([(r["datname"], r["state"] or "", r["waiting"]) for r in rows])
                await asyncio.sleep(self.interval_s)
        finally:
            await conn.close()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, asyncpg.PostgresError):
                await self._task
            self._task = None
