"""Serving the identity HTTP API (services.kit.http_host: on SIGTERM/SIGINT `/healthz` turns
503, the server keeps serving for `IDENTITY_DRAIN_S`, then stops accepting, lets in-flight
requests finish within `IDENTITY_SHUTDOWN_GRACE_S`, then the pool is closed and the process exits 0).
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.identity.bootstrap import IdentityApp
from services.identity.entrypoints.http import HttpContext, build_app
from services.identity.settings import IdentitySettings
from services.kit import telemetry
from services.kit.http_host import HttpHost


class IdentityServer(HttpHost):
    settings: IdentitySettings
    name = "identity"

    def __init__(self, app: IdentityApp) -> None:
        super().__init__(app.settings, limit_concurrency=1000)
        self.app = app
        self._context: HttpContext | None = None

    async def open(self) -> Any:
        s = self.app.settings
        telemetry.configure_tracing(s)
        await self.app.start()
        self._context = HttpContext(
            deps=self.app.deps,
            tokens=self.app.tokens,
            issuer=s.effective_issuer,
            public_url=s.public_url,
            max_form_bytes=s.max_form_bytes,
            jwks_max_age_s=s.jwks_max_age_s,
            ready=self.app.ready,
            trusted_proxies=s.trusted_proxy_networks,
            client_address_header=s.client_address_header,
            signup_enabled=s.signup_enabled,
        )
        return build_app(self._context)

    def begin_drain(self) -> None:
        if self._context is not None:
            self._context.draining = True

    async def close(self) -> None:
        await self.app.close()
        await asyncio.to_thread(telemetry.flush_tracing)

    def started_fields(self) -> dict[str, Any]:
        return {"issuer": self.app.settings.effective_issuer}
