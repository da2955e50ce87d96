"""Throwaway real servers for the tests: each on a free port, in a temporary folder.

They are started the same way `make up` starts them (scripts.stack.stores), never touch
the `make up` data, and are stopped at the end of the session. MongoDB is FerretDB unless
MONGO_URL names a real mongod (the tests then use databases with a unique prefix).
A server that cannot start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scripts.stack import stores
from scripts.stack.process import ManagedProcess, free_port
from scripts.stack.stores import scratch_dir


@dataclass
class Server:
    """A running test server: its URL, and its process when we own it (for restarts)."""

    name: str
    url: str
    process: ManagedProcess | None
    root: Path | None
    extra: dict[str, object] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self, kill: bool = False) -> None:
        """Stop (or kill -9) and start again on the same port and data."""
        assert self.process is not None, f"{self.name} is external: cannot restart it"
        if kill:
            self.process.kill()
        self.process.stop()
        self.process.start()
        self.process.wait_ready(60)

    def cleanup(self) -> None:
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Server:
    root = scratch_dir("pg")
    spec = stores.PostgresSpec(root / "data", free_port(), durable=False)
    proc = stores.postgres_process(spec, root / "postgres.log")
    proc.start()
    proc.wait_ready(60)
    return Server("postgres", spec.url(), proc, root, {"spec": spec})


def start_mongo() -> Server:
    if url := os.environ.get("MONGO_URL"):
        return Server("mongo", url, None, None, {"db_prefix": f"t{uuid.uuid4().hex[:8]}_"})
    root = scratch_dir("mongo")
    port = free_port()
    proc = stores.ferretdb_process(root / "data", port, root / "ferretdb.log")
    proc.start()
    proc.wait_ready(60)
    return Server("mongo", stores.mongo_url(port), proc, root, {"db_prefix": ""})


def start_redis() -> Server:
    root = scratch_dir("redis")
    port = free_port()
    proc = stores.redis_process(root / "data", port, root / "redis.log", durable=False)
    proc.start()
    proc.wait_ready(60)
    return Server("redis", stores.redis_url(port), proc, root)


def start_nats() -> Server:
    root = scratch_dir("nats")
    spec = stores.NatsSpec(root / "data", free_port(), free_port())
    proc = stores.nats_process(spec, root / "nats.log")
    proc.start()
    proc.wait_ready(60)
    return Server("nats", spec.url, proc, root, {"spec": spec})


async def create_database(pg: Server, prefix: str) -> str:
    """A fresh PostgreSQL database on the test server; returns its URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg.url.rsplit("/", 1)[0] + f"/{name}"
