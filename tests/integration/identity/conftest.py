"""Fixtures of the identity integration tests: a real identity service (uvicorn on a free port,
its own PostgreSQL database) seeded with the demo accounts, and an HTTP client.

Argon2 runs with cheap parameters here (the tests hash hundreds of times); the parameters of a
real start are covered by the process tests and the rehash test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from scripts.stack.process import free_port
from services.identity.bootstrap import IdentityApp
from services.identity.entrypoints.server import IdentityServer
from services.identity.service_layer import accounts
from services.identity.settings import IdentitySettings
from services.kit.auth import JwksCache, JwtVerifier, UrlJwksSource
from tests.support.servers import Server, create_database

CHEAP_ARGON2: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def identity_settings(database_url: str, **overrides: Any) -> IdentitySettings:
    """Settings of a test identity service on a free port; its public URL (and issuer) follow it."""
    port = free_port()
    values: dict[str, Any] = {
        "database_url": database_url,
        "http_port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "drain_s": 0,
        "shutdown_grace_s": 2,
        "key_cache_s": 0,
        **CHEAP_ARGON2,
        **overrides,
    }
    return IdentitySettings(**values)


@dataclass
class RunningIdentity:
    server: IdentityServer
    client_secret: str

    @property
    def app(self) -> IdentityApp:
        return self.server.app

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    @property
    def issuer(self) -> str:
        return self.server.settings.effective_issuer

    def verifier(self, leeway_s: int = 0) -> JwtVerifier:
        """A verifier of this identity's tokens, as a service has one (JWKS by URL, no cache floor)."""
        return JwtVerifier(
            JwksCache(UrlJwksSource(self.jwks_url), min_refresh_s=0),
            issuer=self.issuer,
            audience="cinema",
            algorithms=("RS256",),
            leeway_s=leeway_s,
        )


async def start_identity(database_url: str, **overrides: Any) -> RunningIdentity:
    """A started, demo-seeded identity service (stop it with `await running.server.stop()`)."""
    server = IdentityServer(IdentityApp(identity_settings(database_url, **overrides)))
    await server.start()
    try:
        secret = await accounts.seed_demo(server.app.deps, None)
    except BaseException:
        await server.stop()
        raise
    assert secret is not None
    return RunningIdentity(server, secret)


@pytest.fixture(scope="module")
async def identity_db(postgres_server: Server) -> str:
    return await create_database(postgres_server, "identity")


@pytest.fixture(scope="module")
async def identity(identity_db: str) -> AsyncIterator[RunningIdentity]:
    running = await start_identity(identity_db, lockout_threshold=3, lockout_s=2, lockout_window_s=60)
    yield running
    await running.server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
