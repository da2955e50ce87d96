"""The ports of the identity use cases: stores, password hashing, key material and signing, clock.

Adapters in services.identity.adapters implement them (PostgreSQL, argon2-cffi, joserfc); the
unit tests use fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.identity.domain.keys import SigningKeyInfo
from services.identity.domain.model import Client, User
from services.identity.domain.refresh import RefreshToken
from services.identity.domain.throttling import FailedAttempts, ThrottlePolicy


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SecretHasher(Protocol):
    """One-way hashes of passwords and client secrets (argon2id)."""

    async def hash(self, secret: str) -> str: ...

    async def verify(self, hashed: str, secret: str) -> bool:
        """True when `secret` matches; False on a mismatch or an unreadable hash."""
        ...

    def needs_rehash(self, hashed: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        ...

    async def waste_time(self, secret: str) -> None:
        """Take as long as a verification, for a principal that does not exist."""
        ...


class UserRepository(Protocol):
    async def get_by_username(self, username: str) -> User | None: ...

    async def get(self, user_id: str) -> User | None: ...

    async def add(self, user: User) -> None:
        """Raises AlreadyExists when the username, or the e-mail address (any case), is taken."""
        ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def remove(self, username: str) -> bool:
        """Delete the account and its refresh tokens; False when there was none."""
        ...


class ClientRepository(Protocol):
    async def get(self, client_id: str) -> Client | None: ...

    async def add(self, client: Client) -> None:
        """Raises AlreadyExists when the client id is taken."""
        ...

    async def set_secret_hash(self, client_id: str, secret_hash: str) -> None: ...


class AttemptLog(Protocol):
    """Failed sign-in attempts per key (`user:<name>|<address>`, `client:<id>|<address>`: see
    domain.throttling.throttle_key), shared by replicas."""

    async def get(self, principal: str) -> FailedAttempts | None: ...

    async def record_failure(self, principal: str, now: datetime, policy: ThrottlePolicy) -> FailedAttempts:
        """Apply one more failure atomically (concurrent failures all count)."""
        ...

    async def clear(self, principal: str) -> None: ...

    async def forget_stale(self, now: datetime, policy: ThrottlePolicy) -> int: ...


class RefreshTokenStore(Protocol):
    """Refresh tokens by the digest of their value (the value itself is never stored)."""

    async def add(self, token: RefreshToken, digest: bytes) -> None: ...

    async def claim(self, digest: bytes, now: datetime) -> RefreshToken | None:
        """The token as it was, marked used in the same transaction when it was valid (unused, not
        revoked, not expired): of two concurrent claims of one token, exactly one sees it unused."""
        ...

    async def get(self, digest: bytes) -> RefreshToken | None: ...

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every token of the family not revoked yet; returns how many."""
        ...

    async def forget_expired(self, now: datetime) -> int: ...


@dataclass(frozen=True)
class StoredKey:
    """A signing key as stored: rules' view, public JWK and the (possibly sealed) private JWK."""

    info: SigningKeyInfo
    public_jwk: Mapping[str, Any]
    sealed_private: str
    sealing: str


class KeyRotation(Protocol):
    """The key store inside one exclusive transaction (one rotation at a time across replicas)."""

    async def newest(self) -> StoredKey | None:
        """The key not retired: the one signing, or the next one waiting for its activation."""
        ...

    async def signing(self, now: datetime) -> StoredKey | None: ...

    async def retire(self, kid: str, retired_at: datetime, verify_until: datetime) -> None: ...

    async def add(self, key: StoredKey) -> None: ...


class KeyStore(Protocol):
    async def signing(self, now: datetime) -> StoredKey | None:
        """The key that signs at `now` (activated, not yet retired)."""
        ...

    async def published(self, now: datetime) -> list[StoredKey]:
        """The active key and retired keys whose `verify_until` is after `now`."""
        ...

    def exclusive(self) -> AbstractAsyncContextManager[KeyRotation]:
        """A transaction holding the rotation lock: committed at the end of the block."""
        ...

    async def drop_expired(self, now: datetime) -> list[str]:
        """Delete retired keys past `verify_until`; returns their kids."""
        ...

    async def all(self) -> list[StoredKey]: ...

    async def replace_sealed(self, kid: str, sealed_private: str, sealing: str) -> None: ...


@dataclass(frozen=True)
class KeyMaterial:
    public_jwk: Mapping[str, Any]
    private_jwk: Mapping[str, Any]


class KeyFactory(Protocol):
    async def generate(self, kid: str) -> KeyMaterial: ...


class KeySealer(Protocol):
    """Encrypts private keys at rest (or not, in development)."""

    @property
    def scheme(self) -> str:
        """The sealing new keys get (`none` without a key-encryption key)."""
        ...

    def seal(self, kid: str, private_jwk: Mapping[str, Any]) -> str: ...

    def open(self, kid: str, sealed: str, sealing: str) -> Mapping[str, Any]:
        """The private JWK; raises RuntimeError when it cannot be opened with our key."""
        ...


class TokenSigner(Protocol):
    def sign(self, kid: str, algorithm: str, private_jwk: Mapping[str, Any], claims: Mapping[str, Any]) -> str: ...
