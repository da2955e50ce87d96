"""services.kit.oauth_client against the real identity service: a short-lived token is refreshed
before it expires, 50 concurrent callers cost one request, and when identity goes away the
cached token carries on until it expires, then callers get Unavailable quickly."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.kit import errors
from services.kit.auth import JwksCache, JwtVerifier, UrlJwksSource
from services.kit.oauth_client import ClientCredentialsTokenSource
from tests.integration.identity.conftest import start_identity
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration


async def test_token_source_against_identity(postgres_server: Server) -> None:
    database = await create_database(postgres_server, "identity_client")
    running = await start_identity(database, client_token_ttl_s=4)
    verifier = JwtVerifier(
        JwksCache(UrlJwksSource(running.jwks_url), min_refresh_s=0), issuer=running.issuer, audience="cinema"
    )
    tokens = ClientCredentialsTokenSource(
        running.token_url, "reservation", secret=running.client_secret, refresh_at=0.5, expiry_margin_s=1
    )
    try:
        first = set(await asyncio.gather(*(tokens.token() for _ in range(50))))
        assert len(first) == 1 and tokens.fetches == 1
        [token] = first
        caller = await verifier.verify(token)
        assert caller.subject == "reservation" and caller.roles == {"service"}
        await asyncio.sleep(2.1)  # past half of 4 s: refreshed
        refreshed = await tokens.token()
        assert refreshed != token and tokens.fetches == 2
        await verifier.verify(refreshed)

        await running.server.stop()
        assert await tokens.token() == refreshed  # fresh enough: no request at all
        await asyncio.sleep(2.1)  # refresh due, identity gone, token still valid for ~1.9 s
        assert await tokens.token() == refreshed
        await asyncio.sleep(1.0)  # now inside the expiry margin
        started = time.perf_counter()
        with pytest.raises(errors.Unavailable) as raised:
            await tokens.token()
        assert raised.value.reason == "TOKEN_ENDPOINT_UNAVAILABLE"
        assert time.perf_counter() - started < 1.0
    finally:
        await tokens.close()
        await running.server.stop()
