"""Composition root of the identity service: the one place that knows which adapter serves which port.

`IdentityApp` owns the process's resources. `open()` migrates the database, opens the pool,
wires the use cases and encrypts keys left in the clear once a key-encryption key is set
(that is all the admin commands need). `start()` also makes sure a signing key is active and
runs the housekeeping loop: rotate when due, drop expired keys, forget stale failed attempts.
`close()` stops the loop and closes the pool. The HTTP server is in entrypoints/server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import asyncpg

from services.identity.adapters.clock import SystemClock
from services.identity.adapters.hashing import Argon2Hasher
from services.identity.adapters.jose import JoseTokenSigner, KeySealer, RsaKeyFactory
from services.identity.adapters.postgres import (
    PgAttemptLog,
    PgClients,
    PgKeyStore,
    PgRefreshTokens,
    PgUsers,
    migrate,
)
from services.identity.domain.keys import KeyPolicy
from services.identity.domain.refresh import RefreshPolicy
from services.identity.domain.throttling import ThrottlePolicy
from services.identity.domain.tokens import TokenPolicy
from services.identity.service_layer.dependencies import IdentityDependencies
from services.identity.service_layer.keys import ActiveKeyCache, drop_expired_keys, rotate_keys, seal_plaintext_keys
from services.identity.service_layer.ports import Clock
from services.identity.service_layer.tokens import TokenService
from services.identity.settings import IdentitySettings
from services.kit import pg
from services.kit.errors import DomainError

log = logging.getLogger(__name__)


class IdentityApp:
    def __init__(self, settings: IdentitySettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.pool: asyncpg.Pool | None = None
        self._deps: IdentityDependencies | None = None
        self._tokens: TokenService | None = None
        self._active_key: ActiveKeyCache | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def deps(self) -> IdentityDependencies:
        if self._deps is None:
            raise RuntimeError("the identity app is not open")
        return self._deps

    @property
    def tokens(self) -> TokenService:
        if self._tokens is None:
            raise RuntimeError("the identity app is not open")
        return self._tokens

    def _dependencies(self, pool: asyncpg.Pool) -> IdentityDependencies:
        s = self.settings
        token_policy = TokenPolicy(
            issuer=s.effective_issuer,
            audience=s.audience,
            user_ttl_s=s.user_token_ttl_s,
            client_ttl_s=s.client_token_ttl_s,
        )
        return IdentityDependencies(
            users=PgUsers(pool),
            clients=PgClients(pool),
            attempts=PgAttemptLog(pool),
            keys=PgKeyStore(pool),
            key_factory=RsaKeyFactory(s.rsa_key_bits),
            sealer=KeySealer(s.kek_bytes),
            signer=JoseTokenSigner(),
            hasher=Argon2Hasher(
                time_cost=s.argon2_time_cost,
                memory_kib=s.argon2_memory_kib,
                parallelism=s.argon2_parallelism,
                concurrency=s.hash_concurrency,
            ),
            clock=self.clock,
            token_policy=token_policy,
            key_policy=KeyPolicy(
                rotation_period=timedelta(days=s.key_rotation_days),
                key_cache=timedelta(seconds=s.key_cache_s),
                longest_token_ttl=timedelta(seconds=token_policy.longest_ttl_s),
                verifier_leeway=timedelta(seconds=s.verifier_leeway_s),
                publish_ahead=timedelta(seconds=s.key_publish_ahead_s),
            ),
            throttle_policy=ThrottlePolicy(
                threshold=s.lockout_threshold,
                window=timedelta(seconds=s.lockout_window_s),
                base_lockout=timedelta(seconds=s.lockout_s),
                max_lockout=timedelta(seconds=s.lockout_max_s),
            ),
            refresh_tokens=PgRefreshTokens(pool),
            refresh_policy=RefreshPolicy(
                ttl=timedelta(seconds=s.refresh_token_ttl_s), family_ttl=timedelta(seconds=s.refresh_family_ttl_s)
            ),
        )

    async def open(self) -> None:
        """Migrate, open the pool and wire the use cases (what every command needs)."""
        s = self.settings
        applied = await migrate(s.database_url)
        if applied:
            log.info("identity database migrated", extra={"applied": applied})
        self.pool = await pg.create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
        self._deps = self._dependencies(self.pool)
        self._active_key = ActiveKeyCache(self._deps, s.key_cache_s)
        self._tokens = TokenService(self._deps, self._active_key)
        if s.kek_bytes is None:
            log.warning(
                "IDENTITY_KEY_ENCRYPTION_KEY is not set: private signing keys are stored unencrypted "
                "(acceptable for development only)"
            )
        await seal_plaintext_keys(self._deps)

    async def start(self) -> None:
        """Open, make sure a signing key is active, and run the housekeeping loop."""
        await self.open()
        await self.housekeeping_round()
        self._housekeeping = asyncio.create_task(self._housekeeping_loop(), name="identity-housekeeping")

    async def housekeeping_round(self) -> str | None:
        """Rotate when due (or when there is no key yet), drop expired keys, forget stale attempts
        and expired refresh tokens."""
        deps = self.deps
        rotated = await rotate_keys(deps, force=False)
        if rotated and self._active_key is not None:
            self._active_key.forget()
        await drop_expired_keys(deps)
        await deps.attempts.forget_stale(deps.clock.now(), deps.throttle_policy)
        await deps.refresh_tokens.forget_expired(deps.clock.now())
        return rotated

    async def rotate_now(self, *, immediately: bool = False) -> str | None:
        """Make and publish the next key now; it signs one JWKS cache period later (at once when
        `immediately`: for a key that leaked, accepting that verifiers may refuse its tokens until
        they fetch the JWKS again)."""
        rotated = await rotate_keys(self.deps, force=True, immediately=immediately)
        if self._active_key is not None:
            self._active_key.forget()
        return rotated

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_check_interval_s)
            try:
                await self.housekeeping_round()
            except (DomainError, asyncpg.PostgresError) as error:
                log.warning(
                    "key housekeeping failed; next round in %.0f s: %s", self.settings.key_check_interval_s, error
                )

    async def ready(self) -> bool:
        """The store answers (what /healthz reports)."""
        if self.pool is None:
            return False
        try:
            async with asyncio.timeout(1.0):
                await self.pool.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    async def close(self) -> None:
        """Stop the loop, close the pool; tolerates a half-done start."""
        task, self._housekeeping = self._housekeeping, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self.pool = self.pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)
        log.info("identity resources closed")
