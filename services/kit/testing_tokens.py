"""A local token issuer for tests: an RSA key pair, its JWKS file and minted JWTs.

Not for production paths: real tokens come from the identity service (or any OIDC provider).
Tests of every service use it like this:

    issuer = LocalTokenIssuer()
    jwks_path = issuer.write_jwks(tmp_path / "jwks.json")   # -> CINEMA_JWKS_SOURCE / settings.jwks_source
    token = issuer.mint("customer-1", roles={"customer"})
    await stub.Method(request, metadata=issuer.metadata(token))
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

TEST_ISSUER = "cinema-test-issuer"
TEST_AUDIENCE = "cinema"


class LocalTokenIssuer:
    """Signs RS256 tokens with keys it generated itself; `rotate()` adds a new current key."""

    def __init__(self, issuer: str = TEST_ISSUER, audience: str = TEST_AUDIENCE, kid: str = "test-key-1") -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys: list[RSAKey] = []
        self._published: list[RSAKey] = []
        self.rotate(kid, publish=True)

    @property
    def current_key(self) -> RSAKey:
        return self._keys[-1]

    @property
    def kid(self) -> str:
        kid = self.current_key.kid
        assert kid is not None
        return kid

    def rotate(self, kid: str, *, publish: bool = True) -> RSAKey:
        """Generate a new signing key; unpublished keys sign tokens the verifier cannot know yet."""
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})
        self._keys.append(key)
        if publish:
            self._published.append(key)
        return key

    def publish(self, key: RSAKey) -> None:
        if key not in self._published:
            self._published.append(key)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document of the published keys."""
        return dict(KeySet(list(self._published)).as_dict(private=False))

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def mint(
        self,
        subject: str = "customer-1",
        roles: Iterable[str] = ("customer",),
        *,
        ttl_s: int = 300,
        issuer: str | None = None,
        audience: str | None = None,
        issued_at: int | None = None,
        not_before: int | None = None,
        key: RSAKey | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed JWT; override any part to build a token that must be rejected."""
        now = int(time.time()) if issued_at is None else issued_at
        signing_key = key or self.current_key
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "aud": audience or self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_s,
            "roles": sorted(roles),
        }
        if not_before is not None:
            claims["nbf"] = not_before
        claims.update(extra_claims or {})
        return jwt.encode({"alg": "RS256", "kid": signing_key.kid}, claims, signing_key, algorithms=["RS256"])

    @staticmethod
    def metadata(token: str) -> tuple[tuple[str, str]]:
        """gRPC call metadata carrying the token."""
        return (("authorization", f"Bearer {token}"),)
