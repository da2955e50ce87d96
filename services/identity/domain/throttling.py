"""Sign-in throttling, per (principal, client address): after `threshold` failed attempts from one
address, that address is locked out of that account for `base_lockout`, and every further failure
doubles the lockout (up to `max_lockout`). A success clears the record; a record with no failure
and no lockout for `window` is forgotten.

Keyed by the address as well as the account, so a stranger guessing passwords locks only
themselves out: the account's owner, signing in from elsewhere, is never refused because of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


def throttle_key(principal: str, client_address: str) -> str:
    """The key of one (principal, address) pair, e.g. `user:ada|203.0.113.7` (`|` is in no name)."""
    return f"{principal}|{client_address}"


@dataclass(frozen=True)
class FailedAttempts:
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True)
class ThrottlePolicy:
    threshold: int
    window: timedelta
    base_lockout: timedelta
    max_lockout: timedelta

    def locked_for(self, record: FailedAttempts | None, now: datetime) -> float | None:
        """Seconds left of a lockout in force, or None when attempts are allowed."""
        if record is None or record.locked_until is None or record.locked_until <= now:
            return None
        return (record.locked_until - now).total_seconds()

    def lockout_after(self, failures: int) -> timedelta | None:
        """How long `failures` failures in a row lock the address out (None below the threshold)."""
        if failures < self.threshold:
            return None
        doublings = min(failures - self.threshold, 32)  # 2**32 times any base is past any max
        lockout: timedelta = min(self.base_lockout * (1 << doublings), self.max_lockout)
        return lockout

    def _quiet_since(self, record: FailedAttempts) -> datetime:
        """The last moment the record mattered: its last failure, or the end of its lockout."""
        if record.locked_until is not None and record.locked_until > record.last_failure_at:
            return record.locked_until
        return record.last_failure_at

    def after_failure(self, record: FailedAttempts | None, now: datetime) -> FailedAttempts:
        """The record after one more failed attempt; the count starts again after `window` of quiet
        (measured from the end of the last lockout, so waiting one out does not reset the backoff)."""
        if record is None or now - self._quiet_since(record) >= self.window:
            record = FailedAttempts(failures=0, last_failure_at=now)
        failures = record.failures + 1
        lockout = self.lockout_after(failures)
        locked_until = now + lockout if lockout is not None else record.locked_until
        return FailedAttempts(failures=failures, last_failure_at=now, locked_until=locked_until)

    def forgettable(self, record: FailedAttempts, now: datetime) -> bool:
        """Nothing in the record matters any more (quiet for `window`, no lockout in force)."""
        return now - self._quiet_since(record) >= self.window and self.locked_for(record, now) is None

    def stale_before(self, now: datetime) -> datetime:
        """Records whose last failure and lockout end are before this can be forgotten."""
        return now - self.window
