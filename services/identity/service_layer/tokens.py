"""Token issuance (RFC 6749 §4.3 password, §4.4 client credentials and §6 refresh token grants)
and refresh token revocation (RFC 7009).

A password grant answers with a refresh token too (domain.refresh: rotating, one family per
sign-in, a replayed one revokes its family). Failed sign-ins are counted per (username or client,
client address): an address that keeps failing is locked out of that account with exponential
backoff, other addresses are not (domain.throttling).

Failures are the kit's typed errors; the HTTP entry point turns them into RFC 6749 §5.2 errors:
- InvalidArgument: a bad request (field `scope` -> invalid_scope, else invalid_request);
- Unauthenticated: the client could not be authenticated (invalid_client);
- FailedPrecondition INVALID_GRANT: wrong username or password, or a refresh token that is
  unknown, spent, revoked, expired or not this client's (invalid_grant);
- FailedPrecondition TOO_MANY_ATTEMPTS: locked after repeated failures (metadata retry_after_s);
- Unavailable: the store or the signing key is not available right now.
"""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from dataclasses import dataclass

from services.identity.domain.model import Principal, User, normalise_username
from services.identity.domain.refresh import RefreshToken, Verdict, narrowed_scope, refresh_token_digest
from services.identity.domain.throttling import throttle_key
from services.identity.domain.tokens import access_token_claims, granted_roles, parse_scope
from services.identity.service_layer.dependencies import IdentityDependencies
from services.identity.service_layer.keys import ActiveKeyCache
from services.kit.errors import FailedPrecondition, InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

INVALID_GRANT = "INVALID_GRANT"
TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
_BAD_CREDENTIALS = "invalid username or password"
_BAD_REFRESH = "the refresh token is invalid, expired or revoked: sign in again"
UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str | None
    subject: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret
    refresh_token: str | None = None
    refresh_expires_in: int | None = None


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
        self,
        username: str,
        password: str,
        scope: str | None,
        client: ClientCredentials | None = None,
        client_address: str = UNKNOWN_ADDRESS,
    ) -> IssuedToken:
        deps = self._deps
        requested, client_id = await self._scope_and_client(scope, client, client_address)
        try:
            name = normalise_username(username)
        except InvalidArgument:
            await deps.hasher.waste_time(password)  # no name of that shape exists; take as long anyway
            raise FailedPrecondition(_BAD_CREDENTIALS, INVALID_GRANT) from None
        principal_key = throttle_key(f"user:{name}", client_address)
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
        issued = await self._issue(Principal.of_user(user, client_id), requested)
        now = deps.clock.now()
        first = deps.refresh_policy.first(str(uuid.uuid4()), str(uuid.uuid4()), user.id, client_id, requested, now)
        return await self._with_refresh_token(issued, first)

    async def refresh_token_grant(
        self,
        refresh_token: str,
        scope: str | None,
        client: ClientCredentials | None = None,
        client_address: str = UNKNOWN_ADDRESS,
    ) -> IssuedToken:
        """RFC 6749 §6: a new access token and the family's next refresh token for a valid one."""
        deps = self._deps
        requested, client_id = await self._scope_and_client(scope, client, client_address)
        now = deps.clock.now()
        presented = await deps.refresh_tokens.claim(refresh_token_digest(refresh_token), now)
        if presented is None:
            raise FailedPrecondition(_BAD_REFRESH, INVALID_GRANT)
        verdict = deps.refresh_policy.verdict(presented, now)
        if verdict is Verdict.SPENT:
            revoked = await deps.refresh_tokens.revoke_family(presented.family_id, now)
            log.warning(
                "a spent refresh token was presented again: its family is revoked",
                extra={"family_id": presented.family_id, "revoked": revoked, "client_address": client_address},
            )
        if verdict is not Verdict.VALID:
            raise FailedPrecondition(_BAD_REFRESH, INVALID_GRANT)
        if presented.client_id is not None and presented.client_id != client_id:
            # issued to a confidential client: only that client, authenticated, may use it (§6)
            await deps.refresh_tokens.revoke_family(presented.family_id, now)
            raise FailedPrecondition(_BAD_REFRESH, INVALID_GRANT)
        user = await deps.users.get(presented.user_id)
        if user is None:
            raise FailedPrecondition(_BAD_REFRESH, INVALID_GRANT)
        try:
            new_scope = narrowed_scope(presented.scope, requested)
        except ValueError as beyond:
            raise InvalidArgument.for_field("scope", f"scope {str(beyond)!r} exceeds what was granted") from None
        self._still_holds(user, new_scope)
        issued = await self._issue(Principal.of_user(user, presented.client_id), new_scope)
        successor = deps.refresh_policy.successor(presented, str(uuid.uuid4()), new_scope, now)
        return await self._with_refresh_token(issued, successor)

    async def revoke(
        self, token: str, client: ClientCredentials | None = None, client_address: str = UNKNOWN_ADDRESS
    ) -> bool:
        """RFC 7009: revoke the refresh token's whole family (the sign-in it belongs to). An
        unknown token (an access token, one already revoked or expired) is not an error: the
        caller's goal is met. Returns whether a family was revoked now."""
        deps = self._deps
        client_id = (await self._authenticate_client(client, client_address)).client_id if client else None
        found = await deps.refresh_tokens.get(refresh_token_digest(token))
        if found is None:
            return False
        if found.client_id is not None and found.client_id != client_id:
            # RFC 7009 §2.1: the token was issued to another client; say nothing about it
            return False
        revoked = await deps.refresh_tokens.revoke_family(found.family_id, deps.clock.now())
        log.info("refresh token family revoked", extra={"family_id": found.family_id, "tokens": revoked})
        return revoked > 0

    async def _scope_and_client(
        self, scope: str | None, client: ClientCredentials | None, client_address: str
    ) -> tuple[frozenset[str] | None, str | None]:
        """The requested scope (checked before any credential) and the authenticated client's id,
        if the request names a client (a public client, the web screen or `cinema`, does not)."""
        requested = parse_scope(scope)
        client_id = (await self._authenticate_client(client, client_address)).client_id if client else None
        return requested, client_id

    @staticmethod
    def _still_holds(user: User, scope: frozenset[str] | None) -> None:
        """The roles a refreshed token carries are the user's today (a role taken away since the
        sign-in is not refreshed back)."""
        try:
            granted_roles(Principal.of_user(user), scope)
        except InvalidArgument:
            raise FailedPrecondition(_BAD_REFRESH, INVALID_GRANT) from None

    async def _with_refresh_token(self, issued: IssuedToken, token: RefreshToken) -> IssuedToken:
        value = secrets.token_urlsafe(32)
        await self._deps.refresh_tokens.add(token, refresh_token_digest(value))
        lifetime = int((token.expires_at - token.issued_at).total_seconds())
        return IssuedToken(
            access_token=issued.access_token,
            expires_in=issued.expires_in,
            scope=issued.scope,
            subject=issued.subject,
            refresh_token=value,
            refresh_expires_in=lifetime,
        )

    async def client_credentials_grant(
        self, client: ClientCredentials | None, scope: str | None, client_address: str = UNKNOWN_ADDRESS
    ) -> IssuedToken:
        requested = parse_scope(scope)
        if client is None:
            raise Unauthenticated("client authentication is required")
        principal = await self._authenticate_client(client, client_address)
        return await self._issue(principal, requested)

    async def _authenticate_client(self, credentials: ClientCredentials, client_address: str) -> Principal:
        deps = self._deps
        principal_key = throttle_key(f"client:{credentials.client_id}", client_address)
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
            seconds = max(1, math.ceil(remaining))
            raise FailedPrecondition(
                f"too many failed attempts from your address; try again in {seconds} s",
                TOO_MANY_ATTEMPTS,
                {"retry_after_s": str(seconds)},
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
