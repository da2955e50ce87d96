"""Development tokens for `make up`, until the identity service takes over.

One RSA signing key, kept under `.data/auth/` so tokens survive restarts; its public JWKS is
what the services verify against (`<SERVICE>_JWKS_SOURCE`). It mints the service token
reservation presents to payment, and demo customer and manager tokens a person can use.
Development only: the key is created on the machine and never leaves `.data/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

DEV_ISSUER = "cinema-dev"
DEV_AUDIENCE = "cinema"


class DevIssuer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        key_path = folder / "signing-key.json"
        if key_path.exists():
            self.key = RSAKey.import_key(json.loads(key_path.read_text()))
        else:
            self.key = RSAKey.generate_key(
                2048, parameters={"kid": f"dev-{int(time.time())}", "alg": "RS256", "use": "sig"}
            )
            key_path.write_text(json.dumps(self.key.as_dict(private=True)))
            key_path.chmod(0o600)
        self.jwks_path = folder / "jwks.json"
        self.jwks_path.write_text(json.dumps(KeySet([self.key]).as_dict(private=False)))

    def mint(self, subject: str, roles: Iterable[str], ttl_s: int, email: str | None = None) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_s,
            "roles": sorted(roles),
        }
        if email:
            claims["email"] = email
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key, algorithms=["RS256"])

    def token_file(self, name: str, subject: str, roles: Iterable[str], ttl_s: int, email: str | None = None) -> Path:
        """Write a fresh token to `<folder>/<name>.token` (re-minted at every `make up`)."""
        path = self.folder / f"{name}.token"
        path.write_text(self.mint(subject, roles, ttl_s, email))
        path.chmod(0o600)
        return path

    def auth_env(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}_JWKS_SOURCE": str(self.jwks_path),
            f"{prefix}_JWT_ISSUER": DEV_ISSUER,
            f"{prefix}_JWT_AUDIENCE": DEV_AUDIENCE,
        }
