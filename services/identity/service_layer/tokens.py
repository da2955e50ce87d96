"""Token issuance (RFC 6749 §4.3 password and §4.4 client credentials grants).

Failures are the kit's typed errors; the HTTP entry point turns them into RFC 6749 §5.2 errors:
- InvalidArgument: a bad request (field `scope` -> invalid_scope, else invalid_request);
- Unauthenticated: the client could not be authenticated (invalid_client);
- FailedPrecondition INVALID_GRANT: wrong username or password (invalid_grant);
- FailedPrecondition TOO_MANY_ATTEMPTS: locked after repeated failures (metadata retry_after_s);
- Unavailable: the store or the signing key is not available right now.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

from services.identity.domain.model import Principal, normalise_username
from services.identity.domain.tokens import access_token_claims, parse_scope
from services.identity.service_layer.dependencies import IdentityDependencies
from services.identity.service_layer.keys import ActiveKeyCache
from services.kit.errors import FailedPrecondition, InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

INVALID_GRANT = "INVALID_GRANT"
TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
_BAD_CREDENTIALS = "invalid username or password"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str | None
    subject: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    secret: str


class TokenService:
    """The token endpoint's use cases, signing with the replica's cached active key."""

    def __init__(self, deps: IdentityDependencies, active_key: ActiveKeyCache) -> None:
        self._deps = deps
        self._active_key = active_key

    async def password_grant(
        self, username: str, password: str, scope: str | None, client: ClientCredentials | None = None
    ) -> IssuedToken:
        deps = self._deps
        requested = parse_scope(scope)
        client_id = (await self._authenticate_client(client)).client_id if client else None
        try:
            name = normalise_username(username)
        except InvalidArgument:
            await deps.hasher.waste_time(password)  # no name of that shape exists; take as long anyway
            raise FailedPrecondition(_BAD_CREDENTIALS, INVALID_GRANT) from None
        principal_key = f"user:{name}"
        await self._refuse_when_locked(principal_key)
        user = await deps.users.get_by_username(name)
        if user is None:
            await deps.hasher.waste_time(password)
            verified = False
        else:
            verified = await deps.hasher.verify(user.password_hash, password)
        if user is None or not verified:
            await self._failed(principal_key)
            raise FailedPrecondition(_BAD_CREDENTIALS, INVALID_GRANT)
        await deps.attempts.clear(principal_key)
        if deps.hasher.needs_rehash(user.password_hash):
            await deps.users.set_password_hash(user.id, await deps.hasher.hash(password))
            log.info("password re-hashed with the current parameters", extra={"username": name})
        return await self._issue(Principal.of_user(user, client_id), requested)

    async def client_credentials_grant(self, client: ClientCredentials | None, scope: str | None) -> IssuedToken:
        requested = parse_scope(scope)
        if client is None:
            raise Unauthenticated("client authentication is required")
        principal = await self._authenticate_client(client)
        return await self._issue(principal, requested)

    async def _authenticate_client(self, credentials: ClientCredentials) -> Principal:
        deps = self._deps
        principal_key = f"client:{credentials.client_id}"
        await self._refuse_when_locked(principal_key)
        client = await deps.clients.get(credentials.client_id) if credentials.client_id else None
        if client is None:
            await deps.hasher.waste_time(credentials.secret)
            verified = False
        else:
            verified = await deps.hasher.verify(client.secret_hash, credentials.secret)
        if client is None or not verified:
            await self._failed(principal_key)
            raise Unauthenticated("client authentication failed")
        await deps.attempts.clear(principal_key)
        if deps.hasher.needs_rehash(client.secret_hash):
            await deps.clients.set_secret_hash(client.client_id, await deps.hasher.hash(credentials.secret))
        return Principal.of_client(client)

    async def _refuse_when_locked(self, principal_key: str) -> None:
        deps = self._deps
        remaining = deps.throttle_policy.locked_for(await deps.attempts.get(principal_key), deps.clock.now())
        if remaining is not None:
            raise FailedPrecondition(
                "too many failed attempts; try again later",
                TOO_MANY_ATTEMPTS,
                {"retry_after_s": str(max(1, math.ceil(remaining)))},
            )

    async def _failed(self, principal_key: str) -> None:
        deps = self._deps
        await deps.attempts.record_failure(principal_key, deps.clock.now(), deps.throttle_policy)

    async def _issue(self, principal: Principal, requested: frozenset[str] | None) -> IssuedToken:
        deps = self._deps
        key = await self._active_key.current()
        issued_at = int(deps.clock.now().timestamp())
        claims = access_token_claims(
            principal, deps.token_policy, issued_at=issued_at, token_id=str(uuid.uuid4()), requested_scope=requested
        )
        token = deps.signer.sign(key.kid, key.algorithm, key.private_jwk, claims)
        return IssuedToken(
            access_token=token,
            expires_in=int(claims["exp"]) - issued_at,
            scope=claims.get("scope"),
            subject=principal.subject,
        )
