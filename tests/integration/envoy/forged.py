"""Tokens an attacker could send, built from a real issuer's token: each must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from services.kit.testing_tokens import LocalTokenIssuer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(issuer: LocalTokenIssuer, subject: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer.issuer,
        "aud": issuer.audience,
        "sub": subject,
        "iat": now,
        "exp": now + 300,
        "roles": ["customer"],
    }


def unsigned(issuer: LocalTokenIssuer, subject: str = "mallory") -> str:
    """`alg: none`: no signature at all."""
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(issuer, subject)).encode())}."


def hs256_with_public_key(issuer: LocalTokenIssuer, subject: str = "mallory") -> str:
    """HS256 keyed with the issuer's PUBLIC key (PEM): the classic algorithm confusion."""
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(issuer, subject)).encode())}"
    public_pem = issuer.current_key.as_pem(private=False)
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def wrong_signature(issuer: LocalTokenIssuer, subject: str = "mallory") -> str:
    """Signed by another key that claims the real key's id."""
    impostor = LocalTokenIssuer(issuer=issuer.issuer, audience=issuer.audience, kid=issuer.kid)
    return impostor.mint(subject)


def expired(issuer: LocalTokenIssuer, subject: str = "customer-1") -> str:
    """Validly signed, expired ten minutes ago (beyond any clock-skew allowance)."""
    return issuer.mint(subject, issued_at=int(time.time()) - 1200, ttl_s=600)


def tampered(issuer: LocalTokenIssuer, subject: str = "customer-1") -> str:
    """A valid token whose payload was edited afterwards (roles: manager)."""
    header, _, signature = issuer.mint(subject).split(".")
    claims = _claims(issuer, subject) | {"roles": ["manager"]}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def every(issuer: LocalTokenIssuer) -> dict[str, str]:
    return {
        "alg none": unsigned(issuer),
        "HS256 with the public key": hs256_with_public_key(issuer),
        "wrong signature": wrong_signature(issuer),
        "expired": expired(issuer),
        "tampered payload": tampered(issuer),
        "wrong issuer": issuer.mint("customer-1", issuer="https://evil.example"),
        "wrong audience": issuer.mint("customer-1", audience="someone-else"),
        "not a JWT": "not-a-jwt",
    }
