"""Signing-key rotation rules.

One key is active at a time (it signs every new token). A rotation retires it and makes a new
one active; a retired key stays published in the JWKS until every token it can have signed has
expired — the rotation time, plus the time a replica may still sign with a key it cached, plus
the longest token lifetime, plus the clock skew verifiers allow — and is then dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SigningKeyInfo:
    """A signing key as the rules see it (no key material)."""

    kid: str
    algorithm: str
    created_at: datetime
    retired_at: datetime | None = None
    verify_until: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.retired_at is None


@dataclass(frozen=True)
class KeyPolicy:
    rotation_period: timedelta
    key_cache: timedelta
    longest_token_ttl: timedelta
    verifier_leeway: timedelta

    def rotation_due(self, active: SigningKeyInfo | None, now: datetime) -> bool:
        """A rotation is due when there is no active key or the active one is too old."""
        return active is None or now - active.created_at >= self.rotation_period

    def verify_until(self, retired_at: datetime) -> datetime:
        """Until when a key retired at `retired_at` must stay in the JWKS."""
        return retired_at + self.key_cache + self.longest_token_ttl + self.verifier_leeway

    def published(self, keys: Iterable[SigningKeyInfo], now: datetime) -> list[SigningKeyInfo]:
        """The keys verifiers must know now: the active one and retired ones not yet expired, newest first."""
        return sorted(
            (key for key in keys if key.is_active or (key.verify_until is not None and key.verify_until > now)),
            key=lambda key: key.created_at,
            reverse=True,
        )

    def expired(self, keys: Iterable[SigningKeyInfo], now: datetime) -> list[SigningKeyInfo]:
        """Retired keys no token signed by can still be valid: to be dropped."""
        return [key for key in keys if key.verify_until is not None and key.verify_until <= now]


def new_kid(now: datetime, random_suffix: str) -> str:
    """A readable, unique key id: when it was made, plus randomness (e.g. `20261124T101500Z-3f9a1c2b`)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{random_suffix}"
