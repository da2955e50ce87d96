"""A client-credentials token source for service-to-service calls (RFC 6749 §4.4).

    tokens = ClientCredentialsTokenSource(token_url, "reservation", secret_file=Path("/run/secrets/reservation"))
    metadata = (("authorization", f"Bearer {await tokens.token()}"),)

The token is fetched on first use, cached, and refreshed once `refresh_at` (default 80 %) of its
life has passed; concurrent callers share one request (single flight). When a refresh fails
while the cached token is still valid, the cached token is used and the next caller tries
again. When there is no valid token and the token endpoint cannot give one, `token()` raises
the kit's Unavailable (reason `TOKEN_ENDPOINT_UNAVAILABLE`, or `CLIENT_CREDENTIALS_REFUSED`
when the server turned our credentials down) with a retry hint, and further callers get the same
answer without a request until that hint has passed, so a down identity service is not hammered.

The client authenticates with HTTP Basic (client_secret_basic); the secret file is re-read at
every fetch, so a rotated secret is picked up without a restart. Any OAuth2 server will do.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.kit import errors
from services.kit.httpx_import import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Cached:
    access_token: str
    fetched_at: float
    expires_in: float

    def valid(self, now: float, margin_s: float) -> bool:
        return now < self.fetched_at + self.expires_in - margin_s

    def fresh(self, now: float, refresh_at: float) -> bool:
        return now < self.fetched_at + self.expires_in * refresh_at


class ClientCredentialsTokenSource:
    def __init__(
        self,
        token_url: str,
        client_id: str,
        *,
        secret: str | None = None,
        secret_file: Path | None = None,
        scope: str | None = None,
        refresh_at: float = 0.8,
        timeout_s: float = 3.0,
        retry_after_s: float = 1.0,
        expiry_margin_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (secret is None) == (secret_file is None):
            raise ValueError("give the client secret or the file holding it (one of them)")
        if not 0 < refresh_at <= 1:
            raise ValueError("refresh_at is a share of the token's life, in (0, 1]")
        self._token_url = token_url
        self._client_id = client_id
        self._secret = secret
        self._secret_file = secret_file
        self._scope = scope
        self._refresh_at = refresh_at
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._expiry_margin_s = expiry_margin_s
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._cached: _Cached | None = None
        self._failure: tuple[float, errors.Unavailable] | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # requests made to the token endpoint (observable in tests and metrics)

    async def token(self) -> str:
        """A valid access token (cached or fresh); errors.Unavailable when none can be had."""
        cached = self._cached
        if cached is not None and cached.fresh(self._clock(), self._refresh_at):
            return cached.access_token
        async with self._lock:
            now = self._clock()
            cached = self._cached
            if cached is not None and cached.fresh(now, self._refresh_at):
                return cached.access_token  # another caller refreshed while we waited
            if self._failure is not None and now < self._failure[0]:
                if cached is not None and cached.valid(now, self._expiry_margin_s):
                    return cached.access_token
                raise self._failure[1]
            try:
                self._cached = await self._fetch()
                self._failure = None
                return self._cached.access_token
            except errors.Unavailable as error:
                self._failure = (self._clock() + error.retry_after_s, error)
                if cached is not None and cached.valid(self._clock(), self._expiry_margin_s):
                    log.warning("token refresh failed; using the cached token until it expires: %s", error.message)
                    return cached.access_token
                raise

    def invalidate(self) -> None:
        """Forget the cached token (e.g. after the server that received it said it was not valid)."""
        self._cached = None

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def _client_secret(self) -> str:
        if self._secret is not None:
            return self._secret
        assert self._secret_file is not None
        try:
            text = await asyncio.to_thread(self._secret_file.read_text, "utf-8")
        except OSError as error:
            raise errors.Unavailable(
                f"cannot read the client secret file {self._secret_file}: {error.strerror}",
                retry_after_s=self._retry_after_s,
                reason="CLIENT_SECRET_UNREADABLE",
            ) from None
        return text.strip()

    async def _fetch(self) -> _Cached:
        secret = await self._client_secret()
        pair = f"{urllib.parse.quote_plus(self._client_id)}:{urllib.parse.quote_plus(secret)}"
        headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode(), "Accept": "application/json"}
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        if self._client is None:
            self._client = httpx.AsyncClient()
        self.fetches += 1
        started = self._clock()
        try:
            response = await self._client.post(self._token_url, data=form, headers=headers, timeout=self._timeout_s)
        except httpx.HTTPError as error:
            raise errors.Unavailable(
                f"the token endpoint {self._token_url} is unreachable: {type(error).__name__}",
                retry_after_s=self._retry_after_s,
                reason="TOKEN_ENDPOINT_UNAVAILABLE",
            ) from None
        if response.status_code in (400, 401):
            error_code = _error_code(response)
            log.error(
                "the token endpoint refused our client credentials",
                extra={"client_id": self._client_id, "error": error_code, "token_url": self._token_url},
            )
            raise errors.Unavailable(
                f"the token endpoint refused client {self._client_id!r}: {error_code}",
                retry_after_s=max(self._retry_after_s, 5.0),
                reason="CLIENT_CREDENTIALS_REFUSED",
            )
        if response.status_code != 200:
            retry_after = _retry_after(response, self._retry_after_s)
            raise errors.Unavailable(
                f"the token endpoint answered HTTP {response.status_code}",
                retry_after_s=retry_after,
                reason="TOKEN_ENDPOINT_UNAVAILABLE",
            )
        try:
            body = response.json()
            access_token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 300))
            if str(body.get("token_type", "")).lower() != "bearer" or not access_token or expires_in <= 0:
                raise ValueError("not a bearer token response")
        except (ValueError, KeyError, TypeError):
            raise errors.Unavailable(
                "the token endpoint answered something that is not a token",
                retry_after_s=self._retry_after_s,
                reason="TOKEN_ENDPOINT_UNAVAILABLE",
            ) from None
        log.info("service token fetched", extra={"client_id": self._client_id, "expires_in": expires_in})
        # Counted from the moment we asked: the server's clock started before our answer arrived.
        return _Cached(access_token, started, expires_in)


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", f"HTTP {response.status_code}"))
    except ValueError:
        return f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else default
