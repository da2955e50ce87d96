"""Discovery, JWKS and signing keys on a real store: rotation keeps old tokens verifiable until
they expire, replicas agree on one active key, private keys are encrypted at rest."""

from __future__ import annotations

import asyncio
import base64
import os

import asyncpg
import httpx
import pytest

from services.identity.adapters.jose import SEALING_JWE, SEALING_NONE
from services.identity.bootstrap import IdentityApp
from services.identity.service_layer import accounts
from services.identity.service_layer.keys import rotate_keys
from services.kit import errors
from services.kit.auth import JwksCache, JwtVerifier, UrlJwksSource
from tests.integration.identity.conftest import RunningIdentity, identity_settings, start_identity
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration

CUSTOMER = accounts.DEMO_USERS[0]


def verifier(identity: RunningIdentity, leeway_s: int = 0) -> JwtVerifier:
    return JwtVerifier(
        JwksCache(UrlJwksSource(identity.jwks_url), min_refresh_s=0),
        issuer=identity.issuer,
        audience="cinema",
        algorithms=("RS256",),
        leeway_s=leeway_s,
    )


async def customer_token(http: httpx.AsyncClient, identity: RunningIdentity) -> str:
    form = {"grant_type": "password", "username": CUSTOMER.username, "password": CUSTOMER.password}
    response = await http.post(identity.token_url, data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def kids(http: httpx.AsyncClient, identity: RunningIdentity) -> list[str]:
    response = await http.get(identity.jwks_url)
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


def new_kek() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


async def test_discovery_document_is_consistent_with_the_tokens(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    discovery = (await http.get(f"{identity.url}/.well-known/openid-configuration")).json()
    assert discovery == (await http.get(f"{identity.url}/.well-known/oauth-authorization-server")).json()
    assert discovery["issuer"] == identity.issuer
    assert discovery["token_endpoint"] == identity.token_url
    assert discovery["jwks_uri"] == identity.jwks_url
    assert set(discovery["grant_types_supported"]) == {"password", "client_credentials", "refresh_token"}
    assert discovery["revocation_endpoint"] == f"{identity.url}/oauth2/revoke"
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(discovery["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert set(discovery["scopes_supported"]) == {"customer", "manager", "service"}

    # A client knowing only the discovery URL can get a token and verify it.
    form = {"grant_type": "password", "username": CUSTOMER.username, "password": CUSTOMER.password}
    token = (await http.post(discovery["token_endpoint"], data=form)).json()["access_token"]
    jwks = await http.get(discovery["jwks_uri"])
    assert jwks.headers["content-type"].startswith("application/jwk-set+json")
    assert "max-age=" in jwks.headers["cache-control"]
    for key in jwks.json()["keys"]:
        assert key["kty"] == "RSA" and key["use"] == "sig" and key["alg"] == "RS256" and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys(), "a private part reached the JWKS"
    caller = await verifier(identity).verify(token)
    assert caller.claims["iss"] == discovery["issuer"]


async def test_rotation_keeps_old_tokens_valid_until_they_expire_then_drops_the_old_key(
    identity_db: str, http: httpx.AsyncClient, postgres_server: Server
) -> None:
    database = await create_database(postgres_server, "identity_rotation")
    # Tokens live 2 s, verifiers allow no skew, replicas re-read the key at once, the new key signs
    # at once: the old key must stay published 2 s after the rotation, then disappear.
    running = await start_identity(
        database,
        user_token_ttl_s=2,
        client_token_ttl_s=2,
        verifier_leeway_s=0,
        key_cache_s=0,
        key_publish_ahead_s=0,
        jwks_max_age_s=0,
    )
    try:
        check = verifier(running)
        [first_kid] = await kids(http, running)
        old_token = await customer_token(http, running)
        new_kid = await running.app.rotate_now()
        assert new_kid and new_kid != first_kid
        assert await kids(http, running) == [new_kid, first_kid]
        new_token = await customer_token(http, running)
        # a fresh verifier (cache empty) and one that knew only the old key both accept both tokens
        stale = verifier(running)
        await stale.verify(old_token)
        for token in (old_token, new_token):
            await check.verify(token)
            await stale.verify(token)
        assert (await check.verify(new_token)).claims != (await check.verify(old_token)).claims
        await asyncio.sleep(2.2)
        assert await kids(http, running) == [new_kid]  # the published set drops it at once
        with pytest.raises(errors.Unauthenticated, match="expired"):
            await check.verify(new_token)  # 2 s tokens: expired too, but signed by a known key
        await running.app.housekeeping_round()
        async with running.app.deps.keys.exclusive() as rotation:
            active = await rotation.newest()
        assert active is not None and active.info.kid == new_kid
        assert [key.info.kid for key in await running.app.deps.keys.all()] == [new_kid]  # the row is gone
        fresh = verifier(running)
        with pytest.raises(errors.Unauthenticated, match="unknown key"):
            await fresh.verify(old_token)
    finally:
        await running.server.stop()


async def test_automatic_rotation_when_the_key_is_older_than_the_rotation_period(
    postgres_server: Server, http: httpx.AsyncClient
) -> None:
    database = await create_database(postgres_server, "identity_autorotate")
    # 1.5 s rotation period (in days), checked every 0.3 s
    running = await start_identity(database, key_rotation_days=1.5 / 86400, key_check_interval_s=0.3)
    try:
        [first] = await kids(http, running)
        await asyncio.sleep(2.5)
        published = await kids(http, running)
        assert published[0] != first and first in published
        token = await customer_token(http, running)
        assert (await verifier(running).verify(token)).subject
    finally:
        await running.server.stop()


async def test_concurrent_rotations_leave_exactly_one_active_key(postgres_server: Server) -> None:
    database = await create_database(postgres_server, "identity_race")
    replicas = [IdentityApp(identity_settings(database)) for _ in range(4)]
    try:
        for app in replicas:
            await app.open()
        # 4 replicas find "no key yet" at the same moment: one key is made, not four
        made = await asyncio.gather(*(rotate_keys(app.deps, force=False) for app in replicas))
        assert sum(1 for kid in made if kid) == 1
        # 8 forced rotations at once: they run one after another, and one key is active at the end
        forced = await asyncio.gather(*(rotate_keys(replicas[i % 4].deps, force=True) for i in range(8)))
        assert len(set(forced)) == 8
        conn = await asyncpg.connect(database)
        try:
            assert await conn.fetchval("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL") == 1
            assert await conn.fetchval("SELECT count(*) FROM signing_keys") == 9
            # and the store itself refuses a second active key, whoever tries
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    "INSERT INTO signing_keys"
                    " (kid, algorithm, public_jwk, private_jwk, sealing, created_at, activates_at)"
                    " VALUES ('intruder', 'RS256', '{}', '{}', 'none', now(), now())"
                )
        finally:
            await conn.close()
    finally:
        for app in replicas:
            await app.close()


async def test_private_keys_are_encrypted_at_rest_with_the_key_encryption_key(
    postgres_server: Server, http: httpx.AsyncClient
) -> None:
    database = await create_database(postgres_server, "identity_sealed")
    # a development start leaves the key in the clear ...
    dev = IdentityApp(identity_settings(database))
    await dev.open()
    await rotate_keys(dev.deps, force=False)
    await dev.close()
    conn = await asyncpg.connect(database)
    try:
        row = await conn.fetchrow("SELECT private_jwk, sealing FROM signing_keys")
        assert row["sealing"] == SEALING_NONE and '"d"' in row["private_jwk"]
        # ... a start with a key-encryption key encrypts it, and new keys are born encrypted
        kek = new_kek()
        running = await start_identity(database, key_encryption_key=kek)
        try:
            await running.app.rotate_now()
            rows = await conn.fetch("SELECT kid, private_jwk, sealing FROM signing_keys")
            assert len(rows) == 2
            for row in rows:
                assert row["sealing"] == SEALING_JWE
                assert '"d"' not in row["private_jwk"] and row["private_jwk"].count(".") == 4  # compact JWE
            token = await customer_token(http, running)
            assert (await verifier(running).verify(token)).subject
        finally:
            await running.server.stop()
        # without the key, or with another one, the service refuses to start
        for wrong in ("", new_kek()):
            app = IdentityApp(identity_settings(database, key_encryption_key=wrong))
            with pytest.raises(RuntimeError, match="IDENTITY_KEY_ENCRYPTION_KEY"):
                await app.open()
            await app.close()
        # a sealed key moved to another row does not open
        await conn.execute(
            "UPDATE signing_keys SET private_jwk = (SELECT private_jwk FROM signing_keys WHERE retired_at IS NULL)"
            " WHERE retired_at IS NOT NULL"
        )
        app = IdentityApp(identity_settings(database, key_encryption_key=kek))
        with pytest.raises(RuntimeError, match="another kid"):
            await app.open()
        await app.close()
    finally:
        await conn.close()


async def test_hashes_made_with_old_parameters_are_rehashed_at_sign_in(
    postgres_server: Server, http: httpx.AsyncClient
) -> None:
    database = await create_database(postgres_server, "identity_rehash")
    old = await start_identity(database)  # cheap parameters: time 1, 1 MiB
    await accounts.add_user(old.app.deps, "long-timer", "an-old-password", ["customer"])
    await old.server.stop()
    running = await start_identity(database, argon2_time_cost=2, argon2_memory_kib=2048)
    try:
        before = await running.app.deps.users.get_by_username("long-timer")
        assert before is not None and "m=1024,t=1" in before.password_hash
        form = {"grant_type": "password", "username": "long-timer", "password": "an-old-password"}
        assert (await http.post(running.token_url, data=form)).status_code == 200
        after = await running.app.deps.users.get_by_username("long-timer")
        assert (
            after is not None and after.password_hash.startswith("$argon2id$") and "m=2048,t=2" in after.password_hash
        )
        assert (await http.post(running.token_url, data=form)).status_code == 200
    finally:
        await running.server.stop()


async def test_jwks_and_tokens_answer_503_when_the_store_is_gone(
    postgres_server: Server, http: httpx.AsyncClient
) -> None:
    database = await create_database(postgres_server, "identity_outage")
    running = await start_identity(database)
    try:
        conn = await asyncpg.connect(postgres_server.url)
        try:
            name = database.rsplit("/", 1)[1]
            # no new connections, then end the pool's, and wait until they are really gone
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            for _ in range(100):
                if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name):
                    break
                await asyncio.sleep(0.05)
            form = {"grant_type": "password", "username": CUSTOMER.username, "password": CUSTOMER.password}
            response = await http.post(running.token_url, data=form)
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "temporarily_unavailable"
            assert response.headers["retry-after"]
            assert (await http.get(running.jwks_url)).status_code == 503
            assert (await http.get(f"{running.url}/healthz")).status_code == 503
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert (await http.post(running.token_url, data=form)).status_code == 200
        finally:
            await conn.close()
    finally:
        await running.server.stop()
