"""Sign-in throttling: after `threshold` failed attempts for one username (or client) within
`window`, it is locked for `lockout`; a success clears the count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FailedAttempts:
    failures: int
    window_started_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True)
class ThrottlePolicy:
    threshold: int
    window: timedelta
    lockout: timedelta

    def locked_for(self, record: FailedAttempts | None, now: datetime) -> float | None:
        """Seconds left of a lockout in force, or None when attempts are allowed."""
        if record is None or record.locked_until is None or record.locked_until <= now:
            return None
        return (record.locked_until - now).total_seconds()

    def after_failure(self, record: FailedAttempts | None, now: datetime) -> FailedAttempts:
        """The record after one more failed attempt (a new window once the old one has passed)."""
        if record is None or now - record.window_started_at >= self.window:
            record = FailedAttempts(failures=0, window_started_at=now)
        failures = record.failures + 1
        locked_until = now + self.lockout if failures >= self.threshold else record.locked_until
        return FailedAttempts(failures=failures, window_started_at=record.window_started_at, locked_until=locked_until)

    def forgettable(self, record: FailedAttempts, now: datetime) -> bool:
        """Nothing in the record matters any more (window passed, no lockout in force)."""
        window_over = now - record.window_started_at >= self.window
        return window_over and self.locked_for(record, now) is None
