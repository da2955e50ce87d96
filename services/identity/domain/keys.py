"""Signing-key rotation rules.

One key signs at a time. A rotation makes the next key and publishes it in the JWKS at once, but
it signs only `publish_ahead` later (one JWKS cache period of the verifiers: Envoy and the
services may hold a JWKS fetched just before the rotation that long), so no verifier ever meets a
token from a key it has not seen. At that moment the previous key stops signing (it is "retired"
at the successor's activation, decided when the rotation is made: every replica agrees by the
clock alone) and stays published until every token it can have signed has expired — its
retirement, plus the time a replica may still sign with a key it cached, plus the longest token
lifetime, plus the clock skew verifiers allow — and is then dropped. The very first key signs at
once (no verifier can hold a JWKS without it and still need it).
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
    activates_at: datetime | None = None  # None: from its creation

    @property
    def is_active(self) -> bool:
        """Not retired: the newest key (signing, or waiting for its activation)."""
        return self.retired_at is None

    @property
    def activation(self) -> datetime:
        return self.activates_at or self.created_at

    def signs_at(self, now: datetime) -> bool:
        """The key that signs at `now`: activated and not yet retired."""
        return self.activation <= now and (self.retired_at is None or self.retired_at > now)


@dataclass(frozen=True)
class KeyPolicy:
    rotation_period: timedelta
    key_cache: timedelta
    longest_token_ttl: timedelta
    verifier_leeway: timedelta
    publish_ahead: timedelta = timedelta(0)

    def rotation_due(self, newest: SigningKeyInfo | None, now: datetime) -> bool:
        """A rotation is due when there is no key, or the newest one has signed for a whole
        rotation period (never while the newest is still waiting for its activation)."""
        return newest is None or now - newest.activation >= self.rotation_period

    def activation_of_next(
        self, newest: SigningKeyInfo | None, now: datetime, *, immediately: bool = False
    ) -> datetime:
        """When a key made now starts signing: at once when it is the first key (or when told to,
        e.g. the current key leaked), else one JWKS cache period later."""
        if newest is None or immediately:
            return now
        return now + self.publish_ahead

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
