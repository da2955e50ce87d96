"""Who is calling: JWT verification (joserfc), the current `Caller` and the gRPC auth interceptor.

Tokens are verified against a JWKS (a file or an `http(s)://` URL), cached and reloaded when a
token names an unknown `kid` (at most once per `min_refresh_s`). Only the configured
asymmetric algorithms are accepted, so `alg: none` and HS256-signed-with-the-public-key
tokens fail before any signature check. `exp`/`nbf` allow a small leeway; `iss`, `aud`,
`sub` and `exp` are required.

Handlers read the caller with `current_caller()`; use cases demand rights with
`require_authenticated` / `require_role` (services.kit.caller, pure). Roles come from the
`roles` claim (a list, or a space-separated string).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import grpc
import grpc.aio
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import Key, KeySet

from services.kit import errors
from services.kit.caller import ANONYMOUS, Caller
from services.kit.grpc_errors import abort_with_domain_error
from services.kit.httpx_import import httpx
from services.kit.rpc_wrapping import wrap_handler
from services.kit.settings import KitSettings

log = logging.getLogger(__name__)

# Probes and tooling must work without a token.
ALWAYS_PUBLIC_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)


_current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("cinema_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The caller of the RPC being handled (anonymous outside an RPC or on a public method)."""
    return _current_caller.get()


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    """Make `caller` the current caller inside the block (used by the interceptor and by tests)."""
    token = _current_caller.set(caller)
    try:
        yield caller
    finally:
        _current_caller.reset(token)


def _roles_from(claims: Mapping[str, Any]) -> frozenset[str]:
    roles = claims.get("roles", ())
    if isinstance(roles, str):
        return frozenset(roles.split())
    if isinstance(roles, list | tuple):
        return frozenset(str(role) for role in roles)
    return frozenset()


# --- JWKS -------------------------------------------------------------------------------------


class JwksSource(Protocol):
    """Where the verification keys come from."""

    async def load(self) -> Mapping[str, Any]:
        """Return the JWKS document (`{"keys": [...]}`)."""
        ...


@dataclass(frozen=True)
class FileJwksSource:
    """A JWKS document in a local file (e.g. a mounted Kubernetes secret or a test key)."""

    path: Path

    async def load(self) -> Mapping[str, Any]:
        text = await asyncio.to_thread(self.path.read_text, "utf-8")
        document: Mapping[str, Any] = json.loads(text)
        return document


@dataclass
class UrlJwksSource:
    """A JWKS served over HTTP(S) (the identity service's or any OIDC provider's `jwks_uri`)."""

    url: str
    timeout_s: float = 5.0
    client: httpx.AsyncClient | None = None

    async def load(self) -> Mapping[str, Any]:
        if self.client is not None:
            response = await self.client.get(self.url, timeout=self.timeout_s)
        else:
            async with httpx.AsyncClient() as client:
                response = await client.get(self.url, timeout=self.timeout_s)
        response.raise_for_status()
        document: Mapping[str, Any] = response.json()
        return document


def jwks_source_from(value: str) -> JwksSource | None:
    """A URL (`http://`, `https://`) or a file path; empty means no keys at all."""
    if not value:
        return None
    if value.startswith(("http://", "https://")):
        return UrlJwksSource(value)
    return FileJwksSource(Path(value.removeprefix("file://")))


class JwksCache:
    """Verification keys, loaded lazily and reloaded (rate-limited) when an unknown `kid` shows up."""

    def __init__(self, source: JwksSource | None, min_refresh_s: float = 10.0) -> None:
        self._source = source
        self._min_refresh_s = min_refresh_s
        self._keys: KeySet | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> Key | None:
        """The key with this `kid` (or the only key when the token names none); None if unknown."""
        if self._source is None:
            return None
        key = self._find(kid)
        if key is None and self._lock.locked():
            # A load is under way (e.g. the first one, with requests arriving together): wait
            # for it rather than answering UNAVAILABLE because it has not finished yet.
            async with self._lock:
                pass
            key = self._find(kid)
        if key is None and time.monotonic() - self._last_attempt >= self._min_refresh_s:
            await self._reload()
            key = self._find(kid)
        if key is None and self._keys is None:
            raise errors.Unavailable("token signing keys are not available", retry_after_s=self._min_refresh_s)
        return key

    async def warm(self) -> bool:
        """Load the keys now (at start-up), so the first request does not pay for the fetch;
        True when keys are loaded. A failure only logs: requests will retry the load."""
        if self._source is None or self._keys is not None:
            return self._keys is not None
        try:
            await self._reload()
        finally:
            if self._keys is None:  # failed or cut short: let the first request try again
                self._last_attempt = float("-inf")
        return self._keys is not None

    def _find(self, kid: str | None) -> Key | None:
        if self._keys is None:
            return None
        keys = list(self._keys)
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((key for key in keys if key.kid == kid), None)

    async def _reload(self) -> None:
        async with self._lock:
            if time.monotonic() - self._last_attempt < self._min_refresh_s:
                return  # another request reloaded while we waited
            self._last_attempt = time.monotonic()
            assert self._source is not None
            try:
                document = await self._source.load()
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (OSError, ValueError, httpx.HTTPError, JoseError) as error:
                log.warning("could not load JWKS: %s", error)
                return
            log.info("JWKS loaded", extra={"kids": [key.kid for key in self._keys]})


# --- verification -----------------------------------------------------------------------------


class JwtVerifier:
    """Turns a bearer token into a `Caller`, or raises Unauthenticated with the reason."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str] = ("RS256", "ES256", "EdDSA"),
        leeway_s: int = 10,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = tuple(algorithms)
        self._leeway_s = leeway_s

    @classmethod
    def from_settings(cls, settings: KitSettings) -> JwtVerifier:
        keys = JwksCache(jwks_source_from(settings.jwks_source), settings.jwks_min_refresh_s)
        return cls(
            keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms,
            leeway_s=settings.jwt_leeway_s,
        )

    async def warm(self) -> bool:
        """See `JwksCache.warm`."""
        return await self._keys.warm()

    async def verify(self, token: str) -> Caller:
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError):
            raise errors.Unauthenticated("malformed token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise errors.Unauthenticated(f"token algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        key = await self._keys.key_for(kid if isinstance(kid, str) else None)
        if key is None:
            raise errors.Unauthenticated("token signed by an unknown key")
        try:
            decoded = jwt.decode(token, key, algorithms=self._algorithms)
        except JoseError:
            raise errors.Unauthenticated("invalid token signature") from None
        claims_rules = jwt.JWTClaimsRegistry(
            leeway=self._leeway_s,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            claims_rules.validate(decoded.claims)
        except ExpiredTokenError:
            raise errors.Unauthenticated("token expired") from None
        except MissingClaimError as error:
            raise errors.Unauthenticated(f"token misses claim {error.claim}") from None
        except JoseError as error:
            raise errors.Unauthenticated(f"token rejected: {error.description or error.error}") from None
        claims = decoded.claims
        return Caller(
            subject=str(claims["sub"]),
            roles=_roles_from(claims),
            claims=MappingProxyType(dict(claims)),
            token=token,
        )


# --- gRPC -------------------------------------------------------------------------------------


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer ...` metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, credentials = text.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def _normalise_method(name: str) -> str:
    return name if name.startswith("/") else f"/{name}"


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Authenticates every RPC except public ones, and makes the caller current for the handler.

    `public_methods` are full method names (`/cinema.movie.v1.MovieService/ListMovies`) or
    whole services (`/cinema.movie.v1.MovieService/*`). On a public method a valid token still
    identifies the caller; a missing or bad one leaves it anonymous.
    """

    def __init__(self, verifier: JwtVerifier, public_methods: Iterable[str] = ()) -> None:
        self._verifier = verifier
        names = {_normalise_method(name) for name in public_methods}
        self._public_methods = frozenset(name for name in names if not name.endswith("/*"))
        self._public_services = frozenset(name[1:-2] for name in names if name.endswith("/*")) | ALWAYS_PUBLIC_SERVICES

    def is_public(self, method: str) -> bool:
        service = method.lstrip("/").rpartition("/")[0]
        return method in self._public_methods or service in self._public_services

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        token = bearer_token(handler_call_details.invocation_metadata)
        public = self.is_public(method)
        always_public = method.lstrip("/").rpartition("/")[0] in ALWAYS_PUBLIC_SERVICES

        @asynccontextmanager
        async def authenticated(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            caller = ANONYMOUS
            if token is None and not public:
                await abort_with_domain_error(context, errors.Unauthenticated("missing bearer token"))
            if token is not None and not always_public:
                try:
                    caller = await self._verifier.verify(token)
                except errors.DomainError as error:
                    if not public:
                        log.info("rejected token: %s", error.message, extra={"rpc_method": method})
                        await abort_with_domain_error(context, error)
            with acting_as(caller):
                yield

        return wrap_handler(await continuation(handler_call_details), authenticated)
