"""Refresh tokens (RFC 6749 §6), rotating and revocable.

A password grant starts a family; each use of a refresh token answers with a new access token and
the family's next refresh token, and the one used is spent. A spent token presented again means
two parties hold the family (a stolen copy, or a client that did not keep the new one): the whole
family is revoked and both must sign in again. A token lives `ttl` from its issue, and no family
outlives `family_ttl` from the sign-in that started it, however often it is refreshed.

Only a SHA-256 digest of a token is ever stored (tokens are 256 random bits).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


def refresh_token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class RefreshToken:
    id: str
    family_id: str
    user_id: str
    client_id: str | None
    scope: frozenset[str] | None  # the scope of the sign-in (None: all the user's roles)
    issued_at: datetime
    expires_at: datetime
    family_expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class Verdict(StrEnum):
    VALID = "valid"
    SPENT = "spent"  # used before: a replay, the family must be revoked
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class RefreshPolicy:
    ttl: timedelta
    family_ttl: timedelta

    def first(
        self,
        token_id: str,
        family_id: str,
        user_id: str,
        client_id: str | None,
        scope: frozenset[str] | None,
        now: datetime,
    ) -> RefreshToken:
        """The first token of a family (at a password sign-in)."""
        family_expires_at = now + self.family_ttl
        return RefreshToken(
            id=token_id,
            family_id=family_id,
            user_id=user_id,
            client_id=client_id,
            scope=scope,
            issued_at=now,
            expires_at=min(now + self.ttl, family_expires_at),
            family_expires_at=family_expires_at,
        )

    def successor(
        self, spent: RefreshToken, token_id: str, scope: frozenset[str] | None, now: datetime
    ) -> RefreshToken:
        """The family's next token, issued when `spent` is used (never past the family's end)."""
        return RefreshToken(
            id=token_id,
            family_id=spent.family_id,
            user_id=spent.user_id,
            client_id=spent.client_id,
            scope=scope,
            issued_at=now,
            expires_at=min(now + self.ttl, spent.family_expires_at),
            family_expires_at=spent.family_expires_at,
        )

    @staticmethod
    def verdict(token: RefreshToken, now: datetime) -> Verdict:
        """What presenting `token` (as it was before this use) at `now` means."""
        if token.revoked_at is not None:
            return Verdict.REVOKED
        if token.used_at is not None:
            return Verdict.SPENT
        if token.expires_at <= now:
            return Verdict.EXPIRED
        return Verdict.VALID


def narrowed_scope(granted: frozenset[str] | None, requested: frozenset[str] | None) -> frozenset[str] | None:
    """RFC 6749 §6: a refresh may ask for the granted scope or less, never more; None asks for all
    of it. Returns the scope of the new tokens, or raises ValueError naming what exceeds the grant."""
    if requested is None:
        return granted
    if granted is not None and not requested <= granted:
        raise ValueError(" ".join(sorted(requested - granted)))
    return requested
