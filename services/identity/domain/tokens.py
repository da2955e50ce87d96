"""What an access token says: the claims for a principal, the roles a requested scope narrows
them to, and how long the token lives (RFC 9068 JWT access tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.identity.domain.model import ROLE_NAMES, Principal, Role
from services.kit.errors import InvalidArgument


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audience: str
    user_ttl_s: int
    client_ttl_s: int

    def ttl_for(self, principal: Principal) -> int:
        return self.user_ttl_s if principal.username is not None else self.client_ttl_s

    @property
    def longest_ttl_s(self) -> int:
        return max(self.user_ttl_s, self.client_ttl_s)


def parse_scope(scope: str | None) -> frozenset[str] | None:
    """The requested scope values (space-delimited, RFC 6749 §3.3); None when none was asked for.

    Scope values are role names: asking for `customer` gets a token with only that role (a
    manager acting as a customer holds no manager rights in that token). Unknown values are
    refused before any credential is checked.
    """
    if scope is None or not scope.strip():
        return None
    values = frozenset(scope.split(" ")) - {""}
    unknown = sorted(values - ROLE_NAMES)
    if unknown:
        raise InvalidArgument.for_field("scope", f"unknown scope {' '.join(unknown)!r}")
    return values


def granted_roles(principal: Principal, requested: frozenset[str] | None) -> frozenset[Role]:
    """The roles the token carries: all of the principal's, or the requested subset of them."""
    if requested is None:
        return principal.roles
    held = {role.value for role in principal.roles}
    beyond = sorted(requested - held)
    if beyond:
        raise InvalidArgument.for_field("scope", f"scope {' '.join(beyond)!r} exceeds what was granted")
    return frozenset(Role(value) for value in requested)


def access_token_claims(
    principal: Principal,
    policy: TokenPolicy,
    *,
    issued_at: int,
    token_id: str,
    requested_scope: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The claims of one access token (times in seconds since the epoch)."""
    roles = granted_roles(principal, requested_scope)
    claims: dict[str, Any] = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": principal.subject,
        "roles": sorted(role.value for role in roles),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + policy.ttl_for(principal),
        "jti": token_id,
    }
    if requested_scope is not None:
        claims["scope"] = " ".join(sorted(requested_scope))
    if principal.client_id is not None:
        claims["client_id"] = principal.client_id
    if principal.username is not None:
        claims["preferred_username"] = principal.username
    if principal.email:
        claims["email"] = principal.email
    return claims
