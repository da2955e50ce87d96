"""Requests that arrive while the first JWKS load is under way wait for it (no UNAVAILABLE)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from services.kit.auth import JwksCache
from services.kit.testing_tokens import LocalTokenIssuer


class SlowSource:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.loads = 0

    async def load(self) -> Mapping[str, Any]:
        self.loads += 1
        await asyncio.sleep(0.2)
        return self.document


async def test_concurrent_first_requests_wait_for_the_first_load() -> None:
    issuer = LocalTokenIssuer()
    source = SlowSource(issuer.jwks())
    cache = JwksCache(source, min_refresh_s=10)
    keys = await asyncio.gather(*(cache.key_for(issuer.kid) for _ in range(20)))
    assert all(k is not None and k.kid == issuer.kid for k in keys)
    assert source.loads == 1


class FailingOnceSource(SlowSource):
    async def load(self) -> Mapping[str, Any]:
        self.loads += 1
        if self.loads == 1:
            raise OSError("identity is not up yet")
        return self.document


async def test_warm_loads_the_keys_before_the_first_request() -> None:
    issuer = LocalTokenIssuer()
    source = SlowSource(issuer.jwks())
    cache = JwksCache(source, min_refresh_s=10)
    assert await cache.warm() is True
    key = await cache.key_for(issuer.kid)
    assert key is not None and source.loads == 1  # the request did not load again


async def test_a_failed_warm_lets_the_first_request_load_at_once() -> None:
    issuer = LocalTokenIssuer()
    source = FailingOnceSource(issuer.jwks())
    cache = JwksCache(source, min_refresh_s=10)
    assert await cache.warm() is False
    key = await cache.key_for(issuer.kid)  # not held back by the 10 s refresh limit
    assert key is not None and source.loads == 2


async def test_a_warm_cut_short_by_a_timeout_does_not_hold_back_the_first_request() -> None:
    issuer = LocalTokenIssuer()
    source = SlowSource(issuer.jwks())
    cache = JwksCache(source, min_refresh_s=10)
    try:
        async with asyncio.timeout(0.05):
            await cache.warm()
    except TimeoutError:
        pass
    key = await cache.key_for(issuer.kid)
    assert key is not None and source.loads == 2
