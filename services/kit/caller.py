"""The caller of a request as the use cases see it: who (the token's subject), with which roles,
and the checks a use case makes (`require_authenticated`, `require_role`). Pure: verifying the
token and carrying the caller through a request is services.kit.auth's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from services.kit import errors


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of a request (or the anonymous one, `subject is None`)."""

    subject: str | None
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # The raw token, so a service may forward the caller's identity on a downstream call.
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def is_authenticated(self) -> bool:
        return self.subject is not None

    def has_role(self, role: str) -> bool:
        return role in self.roles


ANONYMOUS = Caller(subject=None)


def require_authenticated(caller: Caller) -> Caller:
    """Return the caller if it is authenticated, else raise Unauthenticated."""
    if not caller.is_authenticated:
        raise errors.Unauthenticated("authentication required")
    return caller


def require_role(caller: Caller, *roles: str) -> Caller:
    """Return the caller if it holds one of `roles`; Unauthenticated if anonymous, else PermissionDenied."""
    require_authenticated(caller)
    if not caller.roles.intersection(roles):
        raise errors.PermissionDenied(f"requires role {' or '.join(sorted(roles))}")
    return caller


__all__ = ["ANONYMOUS", "Caller", "require_authenticated", "require_role"]
