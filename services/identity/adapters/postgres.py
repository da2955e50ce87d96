"""The identity store on PostgreSQL (asyncpg): migrations, users, clients, failed attempts, keys,
refresh tokens.

Key rotation runs in one transaction holding a transaction-scoped advisory lock, so replicas
rotate one at a time; the unique index `signing_keys_one_active` is the last word on "one
active key". A lost or refused database connection becomes the kit's Unavailable.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import asyncpg

from services.identity.domain.keys import SigningKeyInfo
from services.identity.domain.model import Client, Role, User
from services.identity.domain.refresh import RefreshToken
from services.identity.domain.throttling import FailedAttempts, ThrottlePolicy
from services.identity.service_layer.ports import StoredKey
from services.kit import pg
from services.kit.errors import AlreadyExists, Unavailable

MIGRATIONS = Path(__file__).with_name("migrations")
_ROTATION_LOCK = 0x4944454E54  # "IDENT": one key rotation at a time per database

_STORE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    # "database is not accepting connections" (and lock-not-available): retrying later may work
    asyncpg.ObjectNotInPrerequisiteStateError,
)


async def migrate(dsn: str) -> list[int]:
    """Apply the pending identity migrations (idempotent); returns the versions applied now."""
    return await pg.migrate(dsn, MIGRATIONS)


@contextlib.contextmanager
def store_outage_is_unavailable() -> Iterator[None]:
    try:
        yield
    except _STORE_DOWN as error:
        raise Unavailable("the identity store is unavailable", retry_after_s=1.0, reason="STORE_UNAVAILABLE") from error


def _user_of(row: asyncpg.Record | None) -> User | None:
    if row is None:
        return None
    return User(
        id=str(row["id"]),
        username=row["username"],
        password_hash=row["password_hash"],
        roles=frozenset(Role(r) for r in row["roles"]),
        email=row["email"],
    )


class PgUsers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_by_username(self, username: str) -> User | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(
                "SELECT id, username, password_hash, roles, email FROM users WHERE username = $1", username
            )
        return _user_of(row)

    async def get(self, user_id: str) -> User | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(
                "SELECT id, username, password_hash, roles, email FROM users WHERE id = $1", uuid.UUID(user_id)
            )
        return _user_of(row)

    async def add(self, user: User) -> None:
        with store_outage_is_unavailable():
            try:
                await self._pool.execute(
                    "INSERT INTO users (id, username, password_hash, roles, email) VALUES ($1, $2, $3, $4, $5)",
                    uuid.UUID(user.id),
                    user.username,
                    user.password_hash,
                    sorted(role.value for role in user.roles),
                    user.email,
                )
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == "users_email_unique":
                    raise AlreadyExists(
                        "user", user.email or "", "an account with this e-mail address already exists"
                    ) from None
                raise AlreadyExists("user", user.username, "an account with this name already exists") from None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        with store_outage_is_unavailable():
            await self._pool.execute(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
                uuid.UUID(user_id),
                password_hash,
            )

    async def remove(self, username: str) -> bool:
        with store_outage_is_unavailable():
            # refresh_tokens go with it (ON DELETE CASCADE); tokens already issued end on their own
            status = await self._pool.execute("DELETE FROM users WHERE username = $1", username)
        return str(status) == "DELETE 1"


class PgClients:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, client_id: str) -> Client | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(
                "SELECT client_id, secret_hash, roles FROM clients WHERE client_id = $1", client_id
            )
        if row is None:
            return None
        return Client(
            client_id=row["client_id"], secret_hash=row["secret_hash"], roles=frozenset(Role(r) for r in row["roles"])
        )

    async def add(self, client: Client) -> None:
        with store_outage_is_unavailable():
            try:
                await self._pool.execute(
                    "INSERT INTO clients (client_id, secret_hash, roles) VALUES ($1, $2, $3)",
                    client.client_id,
                    client.secret_hash,
                    sorted(role.value for role in client.roles),
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("client", client.client_id) from None

    async def set_secret_hash(self, client_id: str, secret_hash: str) -> None:
        with store_outage_is_unavailable():
            await self._pool.execute(
                "UPDATE clients SET secret_hash = $2, updated_at = now() WHERE client_id = $1", client_id, secret_hash
            )


def _attempts_of(row: asyncpg.Record | None) -> FailedAttempts | None:
    if row is None:
        return None
    return FailedAttempts(row["failures"], row["last_failure_at"], row["locked_until"])


class PgAttemptLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, principal: str) -> FailedAttempts | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(
                "SELECT failures, last_failure_at, locked_until FROM failed_attempts WHERE principal = $1", principal
            )
        return _attempts_of(row)

    async def record_failure(self, principal: str, now: datetime, policy: ThrottlePolicy) -> FailedAttempts:
        select = "SELECT failures, last_failure_at, locked_until FROM failed_attempts WHERE principal = $1 FOR UPDATE"
        with store_outage_is_unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                # The row is locked while we count, so concurrent failures (any replica) all count.
                row = await conn.fetchrow(select, principal)
                if row is None:
                    first = policy.after_failure(None, now)
                    inserted = await conn.fetchval(
                        "INSERT INTO failed_attempts (principal, failures, last_failure_at, locked_until)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT (principal) DO NOTHING RETURNING principal",
                        principal,
                        first.failures,
                        first.last_failure_at,
                        first.locked_until,
                    )
                    if inserted is not None:
                        return first
                    row = await conn.fetchrow(select, principal)  # another request created it meanwhile
                updated = policy.after_failure(_attempts_of(row), now)
                await conn.execute(
                    "UPDATE failed_attempts SET failures = $2, last_failure_at = $3, locked_until = $4"
                    " WHERE principal = $1",
                    principal,
                    updated.failures,
                    updated.last_failure_at,
                    updated.locked_until,
                )
        return updated

    async def clear(self, principal: str) -> None:
        with store_outage_is_unavailable():
            await self._pool.execute("DELETE FROM failed_attempts WHERE principal = $1", principal)

    async def forget_stale(self, now: datetime, policy: ThrottlePolicy) -> int:
        with store_outage_is_unavailable():
            result = await self._pool.execute(
                "DELETE FROM failed_attempts"
                " WHERE last_failure_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)",
                policy.stale_before(now),
            )
        return int(result.rsplit(" ", 1)[-1])


# Whole statements, written out: no SQL is assembled from pieces.
_NEWEST_KEY = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until, activates_at
FROM signing_keys WHERE retired_at IS NULL
"""
_SIGNING_KEY = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until, activates_at
FROM signing_keys WHERE activates_at <= $1 AND (retired_at IS NULL OR retired_at > $1)
ORDER BY activates_at DESC LIMIT 1
"""
_PUBLISHED_KEYS = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until, activates_at
FROM signing_keys WHERE retired_at IS NULL OR verify_until > $1 ORDER BY created_at DESC
"""
_ALL_KEYS = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until, activates_at
FROM signing_keys ORDER BY created_at
"""


def _key_of(row: asyncpg.Record) -> StoredKey:
    return StoredKey(
        info=SigningKeyInfo(
            kid=row["kid"],
            algorithm=row["algorithm"],
            created_at=row["created_at"],
            retired_at=row["retired_at"],
            verify_until=row["verify_until"],
            activates_at=row["activates_at"],
        ),
        public_jwk=json.loads(row["public_jwk"]),
        sealed_private=row["private_jwk"],
        sealing=row["sealing"],
    )


class PgKeyRotation:
    """The key store inside the rotation transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def newest(self) -> StoredKey | None:
        row = await self._conn.fetchrow(_NEWEST_KEY)
        return _key_of(row) if row else None

    async def signing(self, now: datetime) -> StoredKey | None:
        row = await self._conn.fetchrow(_SIGNING_KEY, now)
        return _key_of(row) if row else None

    async def retire(self, kid: str, retired_at: datetime, verify_until: datetime) -> None:
        await self._conn.execute(
            "UPDATE signing_keys SET retired_at = $2, verify_until = $3 WHERE kid = $1 AND retired_at IS NULL",
            kid,
            retired_at,
            verify_until,
        )

    async def add(self, key: StoredKey) -> None:
        await self._conn.execute(
            "INSERT INTO signing_keys (kid, algorithm, public_jwk, private_jwk, sealing, created_at, activates_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key.info.kid,
            key.info.algorithm,
            json.dumps(dict(key.public_jwk)),
            key.sealed_private,
            key.sealing,
            key.info.created_at,
            key.info.activation,
        )


class PgKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def signing(self, now: datetime) -> StoredKey | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(_SIGNING_KEY, now)
        return _key_of(row) if row else None

    async def published(self, now: datetime) -> list[StoredKey]:
        with store_outage_is_unavailable():
            rows = await self._pool.fetch(_PUBLISHED_KEYS, now)
        return [_key_of(row) for row in rows]

    async def all(self) -> list[StoredKey]:
        with store_outage_is_unavailable():
            rows = await self._pool.fetch(_ALL_KEYS)
        return [_key_of(row) for row in rows]

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[PgKeyRotation]:
        with store_outage_is_unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _ROTATION_LOCK)
                yield PgKeyRotation(conn)

    async def drop_expired(self, now: datetime) -> list[str]:
        with store_outage_is_unavailable():
            rows = await self._pool.fetch(
                "DELETE FROM signing_keys WHERE verify_until IS NOT NULL AND verify_until <= $1 RETURNING kid", now
            )
        return [row["kid"] for row in rows]

    async def replace_sealed(self, kid: str, sealed_private: str, sealing: str) -> None:
        with store_outage_is_unavailable():
            await self._pool.execute(
                "UPDATE signing_keys SET private_jwk = $2, sealing = $3 WHERE kid = $1", kid, sealed_private, sealing
            )


_REFRESH_FOR_UPDATE = """
SELECT id, family_id, user_id, client_id, scope, issued_at, expires_at, family_expires_at, used_at, revoked_at
FROM refresh_tokens WHERE digest = $1 FOR UPDATE
"""
_REFRESH_BY_DIGEST = """
SELECT id, family_id, user_id, client_id, scope, issued_at, expires_at, family_expires_at, used_at, revoked_at
FROM refresh_tokens WHERE digest = $1
"""


def _refresh_of(row: asyncpg.Record | None) -> RefreshToken | None:
    if row is None:
        return None
    scope = row["scope"]
    return RefreshToken(
        id=str(row["id"]),
        family_id=str(row["family_id"]),
        user_id=str(row["user_id"]),
        client_id=row["client_id"],
        scope=frozenset(scope.split(" ")) if scope is not None else None,
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        family_expires_at=row["family_expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
    )


class PgRefreshTokens:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, token: RefreshToken, digest: bytes) -> None:
        with store_outage_is_unavailable():
            await self._pool.execute(
                "INSERT INTO refresh_tokens (id, digest, family_id, user_id, client_id, scope, issued_at, expires_at,"
                " family_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                uuid.UUID(token.id),
                digest,
                uuid.UUID(token.family_id),
                uuid.UUID(token.user_id),
                token.client_id,
                " ".join(sorted(token.scope)) if token.scope is not None else None,
                token.issued_at,
                token.expires_at,
                token.family_expires_at,
            )

    async def claim(self, digest: bytes, now: datetime) -> RefreshToken | None:
        with store_outage_is_unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                # The row lock makes "is it unused? then it is used now" one step for every replica.
                row = await conn.fetchrow(_REFRESH_FOR_UPDATE, digest)
                token = _refresh_of(row)
                if token is not None and token.used_at is None and token.revoked_at is None and token.expires_at > now:
                    await conn.execute("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1", uuid.UUID(token.id), now)
        return token

    async def get(self, digest: bytes) -> RefreshToken | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(_REFRESH_BY_DIGEST, digest)
        return _refresh_of(row)

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        with store_outage_is_unavailable():
            result = await self._pool.execute(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
                uuid.UUID(family_id),
                now,
            )
        return int(result.rsplit(" ", 1)[-1])

    async def forget_expired(self, now: datetime) -> int:
        with store_outage_is_unavailable():
            result = await self._pool.execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", now)
        return int(result.rsplit(" ", 1)[-1])
