"""The identity store on PostgreSQL (asyncpg): migrations, users, clients, failed attempts, keys.

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


class PgUsers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_by_username(self, username: str) -> User | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(
                "SELECT id, username, password_hash, roles, email FROM users WHERE username = $1", username
            )
        if row is None:
            return None
        return User(
            id=str(row["id"]),
            username=row["username"],
            password_hash=row["password_hash"],
            roles=frozenset(Role(r) for r in row["roles"]),
            email=row["email"],
        )

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
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("user", user.username) from None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        with store_outage_is_unavailable():
            await self._pool.execute(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
                uuid.UUID(user_id),
                password_hash,
            )


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
    return FailedAttempts(row["failures"], row["window_started_at"], row["locked_until"])


class PgAttemptLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, principal: str) -> FailedAttempts | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(
                "SELECT failures, window_started_at, locked_until FROM failed_attempts WHERE principal = $1", principal
            )
        return _attempts_of(row)

    async def record_failure(self, principal: str, now: datetime, policy: ThrottlePolicy) -> FailedAttempts:
        select = "SELECT failures, window_started_at, locked_until FROM failed_attempts WHERE principal = $1 FOR UPDATE"
        with store_outage_is_unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                # The row is locked while we count, so concurrent failures (any replica) all count.
                row = await conn.fetchrow(select, principal)
                if row is None:
                    first = policy.after_failure(None, now)
                    inserted = await conn.fetchval(
                        "INSERT INTO failed_attempts (principal, failures, window_started_at, locked_until)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT (principal) DO NOTHING RETURNING principal",
                        principal,
                        first.failures,
                        first.window_started_at,
                        first.locked_until,
                    )
                    if inserted is not None:
                        return first
                    row = await conn.fetchrow(select, principal)  # another request created it meanwhile
                updated = policy.after_failure(_attempts_of(row), now)
                await conn.execute(
                    "UPDATE failed_attempts SET failures = $2, window_started_at = $3, locked_until = $4"
                    " WHERE principal = $1",
                    principal,
                    updated.failures,
                    updated.window_started_at,
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
                " WHERE window_started_at <= $1 AND (locked_until IS NULL OR locked_until <= $2)",
                now - policy.window,
                now,
            )
        return int(result.rsplit(" ", 1)[-1])


# Whole statements, written out: no SQL is assembled from pieces.
_ACTIVE_KEY = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until
FROM signing_keys WHERE retired_at IS NULL
"""
_PUBLISHED_KEYS = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until
FROM signing_keys WHERE retired_at IS NULL OR verify_until > $1 ORDER BY created_at DESC
"""
_ALL_KEYS = """
SELECT kid, algorithm, public_jwk, private_jwk, sealing, created_at, retired_at, verify_until
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
        ),
        public_jwk=json.loads(row["public_jwk"]),
        sealed_private=row["private_jwk"],
        sealing=row["sealing"],
    )


class PgKeyRotation:
    """The key store inside the rotation transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def active(self) -> StoredKey | None:
        row = await self._conn.fetchrow(_ACTIVE_KEY)
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
            "INSERT INTO signing_keys (kid, algorithm, public_jwk, private_jwk, sealing, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            key.info.kid,
            key.info.algorithm,
            json.dumps(dict(key.public_jwk)),
            key.sealed_private,
            key.sealing,
            key.info.created_at,
        )


class PgKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def active(self) -> StoredKey | None:
        with store_outage_is_unavailable():
            row = await self._pool.fetchrow(_ACTIVE_KEY)
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
