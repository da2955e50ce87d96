"""Key material, signing and sealing with joserfc (no hand-made JWT or crypto code).

- `RsaKeyFactory`: a new RSA key pair (RS256) as JWKs, generated in a worker thread.
- `JoseTokenSigner`: compact JWS of the claims, header `alg`, `kid`, `typ: at+jwt` (RFC 9068).
- `KeySealer`: private JWKs encrypted at rest as a compact JWE (`dir` + `A256GCM`) under the
  key-encryption key, with the kid in the protected (authenticated) header so a sealed key
  cannot be moved to another row; without a key-encryption key (development) stored as is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey, RSAKey

from services.identity.service_layer.ports import KeyMaterial

SEALING_NONE = "none"
SEALING_JWE = "jwe-dir-a256gcm"
_JWE_ALGORITHMS = ["dir", "A256GCM"]


class RsaKeyFactory:
    def __init__(self, bits: int = 2048) -> None:
        self._bits = bits

    async def generate(self, kid: str) -> KeyMaterial:
        key = await asyncio.to_thread(RSAKey.generate_key, self._bits, {"kid": kid, "alg": "RS256", "use": "sig"}, True)
        return KeyMaterial(public_jwk=dict(key.as_dict(private=False)), private_jwk=dict(key.as_dict(private=True)))


class JoseTokenSigner:
    """Signs with a private JWK; the imported key is kept per kid (importing RSA keys is not free)."""

    def __init__(self) -> None:
        self._keys: dict[str, RSAKey] = {}

    def sign(self, kid: str, algorithm: str, private_jwk: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        key = self._keys.get(kid)
        if key is None:
            key = RSAKey.import_key(dict(private_jwk))
            if len(self._keys) > 16:  # old kids are never used again
                self._keys.clear()
            self._keys[kid] = key
        header = {"alg": algorithm, "kid": kid, "typ": "at+jwt"}
        return jwt.encode(header, dict(claims), key, algorithms=[algorithm])


class KeySealer:
    def __init__(self, key_encryption_key: bytes | None) -> None:
        self._kek = OctKey.import_key(key_encryption_key) if key_encryption_key else None

    @property
    def scheme(self) -> str:
        return SEALING_JWE if self._kek is not None else SEALING_NONE

    def seal(self, kid: str, private_jwk: Mapping[str, Any]) -> str:
        plaintext = json.dumps(dict(private_jwk), separators=(",", ":")).encode()
        if self._kek is None:
            return plaintext.decode()
        header = {"alg": "dir", "enc": "A256GCM", "kid": kid, "cty": "jwk+json"}
        return jwe.encrypt_compact(header, plaintext, self._kek, algorithms=_JWE_ALGORITHMS)

    def open(self, kid: str, sealed: str, sealing: str) -> Mapping[str, Any]:
        if sealing == SEALING_NONE:
            document: Mapping[str, Any] = json.loads(sealed)
            return document
        if sealing != SEALING_JWE:
            raise RuntimeError(f"signing key {kid}: unknown sealing {sealing!r}")
        if self._kek is None:
            raise RuntimeError(f"signing key {kid} is encrypted at rest and IDENTITY_KEY_ENCRYPTION_KEY is not set")
        try:
            opened = jwe.decrypt_compact(sealed, self._kek, algorithms=_JWE_ALGORITHMS)
        except (JoseError, ValueError) as error:
            raise RuntimeError(
                f"signing key {kid} cannot be decrypted with IDENTITY_KEY_ENCRYPTION_KEY (another key?)"
            ) from error
        if opened.protected.get("kid") != kid or opened.plaintext is None:
            raise RuntimeError(f"signing key {kid}: the sealed key belongs to another kid")
        document = json.loads(opened.plaintext)
        return document
