"""Signing-key use cases: rotate (forced, or when due), drop expired keys, publish the JWKS,
and the key a replica signs with (read from the store, cached for a few seconds).

A rotation publishes the next key at once and schedules its activation one JWKS cache period
later (domain.keys); the key that signs is chosen by the clock, so replicas switch together.

Several replicas share one store: a rotation runs in a transaction holding an advisory lock and
re-reads the active key inside it, so concurrent "rotation due" checks make one new key, and the
store's unique index on the active key makes two active keys impossible whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.identity.domain.keys import SigningKeyInfo, new_kid
from services.identity.service_layer.dependencies import IdentityDependencies
from services.identity.service_layer.ports import StoredKey
from services.kit.errors import Unavailable

log = logging.getLogger(__name__)


async def rotate_keys(deps: IdentityDependencies, *, force: bool, immediately: bool = False) -> str | None:
    """Make the next key (always when `force`, else only when due) and publish it; it signs one
    JWKS cache period later, or at once when `immediately` (a leaked key) or when it is the first.
    Returns its kid, or None."""
    async with deps.keys.exclusive() as rotation:
        newest = await rotation.newest()
        now = deps.clock.now()
        newest_info = newest.info if newest else None
        if not force and not deps.key_policy.rotation_due(newest_info, now):
            return None
        activates_at = deps.key_policy.activation_of_next(newest_info, now, immediately=immediately)
        kid = new_kid(now, secrets.token_hex(4))
        material = await deps.key_factory.generate(kid)
        if newest is not None:
            # it signs until its successor does, and verifies what it signed until that expires
            await rotation.retire(newest.info.kid, activates_at, deps.key_policy.verify_until(activates_at))
        await rotation.add(
            StoredKey(
                info=SigningKeyInfo(kid=kid, algorithm=deps.algorithm, created_at=now, activates_at=activates_at),
                public_jwk=material.public_jwk,
                sealed_private=deps.sealer.seal(kid, material.private_jwk),
                sealing=deps.sealer.scheme,
            )
        )
    log.info(
        "signing key rotated",
        extra={
            "kid": kid,
            "activates_at": activates_at.isoformat(),
            "retired_kid": newest.info.kid if newest else None,
        },
    )
    return kid


async def drop_expired_keys(deps: IdentityDependencies) -> list[str]:
    dropped = await deps.keys.drop_expired(deps.clock.now())
    if dropped:
        log.info("expired signing keys dropped", extra={"kids": dropped})
    return dropped


async def seal_plaintext_keys(deps: IdentityDependencies) -> list[str]:
    """Encrypt keys stored in the clear (from a development start) once a key-encryption key is set;
    fails when a key is sealed with another key than ours (or we have none)."""
    resealed = []
    for key in await deps.keys.all():
        private = deps.sealer.open(key.info.kid, key.sealed_private, key.sealing)
        if key.sealing != deps.sealer.scheme and deps.sealer.scheme != "none":
            await deps.keys.replace_sealed(key.info.kid, deps.sealer.seal(key.info.kid, private), deps.sealer.scheme)
            resealed.append(key.info.kid)
    if resealed:
        log.info("signing keys encrypted at rest", extra={"kids": resealed})
    return resealed


async def jwks(deps: IdentityDependencies) -> dict[str, list[Mapping[str, Any]]]:
    """The JWKS document: the public halves of the published keys, newest first."""
    keys = await deps.keys.published(deps.clock.now())
    return {"keys": [dict(key.public_jwk) for key in sorted(keys, key=lambda k: k.info.created_at, reverse=True)]}


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    algorithm: str
    private_jwk: Mapping[str, Any]
    retired_at: datetime | None = None


class ActiveKeyCache:
    """The key this replica signs with: re-read from the store at most every `cache_s` seconds
    (and at once when the cached key's retirement has come), one read at a time, so a rotation
    done anywhere reaches every replica within that time."""

    def __init__(self, deps: IdentityDependencies, cache_s: float) -> None:
        self._deps = deps
        self._cache_s = cache_s
        self._key: ActiveKey | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        if self._key is None or time.monotonic() - self._read_at >= self._cache_s:
            return False
        return self._key.retired_at is None or self._key.retired_at > self._deps.clock.now()

    async def current(self) -> ActiveKey:
        if self._fresh():
            assert self._key is not None
            return self._key
        async with self._lock:
            if not self._fresh():
                stored = await self._deps.keys.signing(self._deps.clock.now())
                if stored is None:
                    raise Unavailable("no signing key yet", retry_after_s=1.0, reason="NO_SIGNING_KEY")
                if self._key is None or self._key.kid != stored.info.kid:
                    private = self._deps.sealer.open(stored.info.kid, stored.sealed_private, stored.sealing)
                    self._key = ActiveKey(stored.info.kid, stored.info.algorithm, private, stored.info.retired_at)
                else:
                    self._key = ActiveKey(
                        self._key.kid, self._key.algorithm, self._key.private_jwk, stored.info.retired_at
                    )
                self._read_at = time.monotonic()
            assert self._key is not None
            return self._key

    def forget(self) -> None:
        """Read the store again at the next token (after a rotation in this process)."""
        self._read_at = float("-inf")
