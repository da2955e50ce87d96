"""PostgreSQL for the services that own a PostgreSQL database: pools and versioned migrations.

Migrations are plain SQL files named `NNN_what.sql` in a service's migrations folder, applied
in order, each in its own transaction, recorded in `schema_migrations`; an advisory lock lets
several replicas start at once without racing. Applying them again does nothing. A migration
that was applied and then edited is refused (its checksum changed): write a new one instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.kit import store_tracing

log = logging.getLogger("cinema.pg")

_NAME = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x43494E454D41  # "CINEMA": one migration run per database at a time


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations(folder: Path) -> list[Migration]:
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_what.sql")
        migrations.append(Migration(int(m["version"]), m["name"], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {folder}")
    return migrations


async def migrate(dsn_or_conn: str | asyncpg.Connection, folder: Path) -> list[int]:
    """Apply the pending migrations of `folder`; returns the versions applied now."""
    conn = await asyncpg.connect(dsn_or_conn) if isinstance(dsn_or_conn, str) else dsn_or_conn
    applied_now: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
            }
            for migration in load_migrations(folder):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version}_{migration.name} changed after it was applied; "
                            "add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                log.info("applied migration %03d_%s", migration.version, migration.name)
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        if isinstance(dsn_or_conn, str):
            await conn.close()
    return applied_now


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections report each query as a client span (inside a trace only)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=10, init=store_tracing.pg_connection_init
    )
    if pool is None:  # only with a custom init that returns None; keeps the type honest
        raise RuntimeError("could not create a PostgreSQL pool")
    return pool
