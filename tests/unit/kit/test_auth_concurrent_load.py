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
