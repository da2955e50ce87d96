"""JWT verification accepts only well-signed, current tokens for our issuer and audience."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from services.kit import errors
from services.kit.auth import (
    AuthInterceptor,
    FileJwksSource,
    JwksCache,
    JwtVerifier,
    acting_as,
    bearer_token,
    current_caller,
)
from services.kit.caller import ANONYMOUS, Caller, require_authenticated, require_role
from services.kit.settings import KitSettings
from services.kit.testing_tokens import LocalTokenIssuer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """An attacker's token, built by hand on purpose (never how the kit makes tokens)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture(scope="module")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture
def jwks_path(issuer: LocalTokenIssuer, tmp_path: Path) -> Path:
    return issuer.write_jwks(tmp_path / "jwks.json")


def make_verifier(issuer: LocalTokenIssuer, jwks_path: Path, min_refresh_s: float = 0.0) -> JwtVerifier:
    return JwtVerifier(
        JwksCache(FileJwksSource(jwks_path), min_refresh_s=min_refresh_s),
        issuer=issuer.issuer,
        audience=issuer.audience,
    )


def claims_for(issuer: LocalTokenIssuer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer.issuer, "aud": issuer.audience, "sub": "mallory", "exp": now + 300} | overrides


async def test_valid_token_gives_a_caller(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    token = issuer.mint("customer-7", roles={"customer"})
    caller = await make_verifier(issuer, jwks_path).verify(token)
    assert caller.subject == "customer-7"
    assert caller.roles == frozenset({"customer"})
    assert caller.claims["iss"] == issuer.issuer
    assert caller.token == token
    assert caller.is_authenticated


async def test_leeway_tolerates_small_clock_skew(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    now = int(time.time())
    token = issuer.mint(issued_at=now - 305, ttl_s=300, not_before=now + 5)  # expired 5 s ago, valid in 5 s
    assert (await make_verifier(issuer, jwks_path).verify(token)).subject == "customer-1"


async def reason_for(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(errors.Unauthenticated) as raised:
        await verifier.verify(token)
    return raised.value.message


async def test_expired_token_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    token = issuer.mint(issued_at=int(time.time()) - 3600, ttl_s=60)
    assert await reason_for(make_verifier(issuer, jwks_path), token) == "token expired"


async def test_not_yet_valid_token_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    token = issuer.mint(not_before=int(time.time()) + 600)
    assert "not yet valid" in await reason_for(make_verifier(issuer, jwks_path), token)


async def test_wrong_issuer_and_audience_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    verifier = make_verifier(issuer, jwks_path)
    assert "iss" in await reason_for(verifier, issuer.mint(issuer="https://evil.example"))
    assert "aud" in await reason_for(verifier, issuer.mint(audience="another-system"))


async def test_missing_subject_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    token = issuer.mint(extra_claims={"sub": None})
    assert "sub" in await reason_for(make_verifier(issuer, jwks_path), token)


async def test_unknown_kid_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    other = LocalTokenIssuer(kid="never-published")
    token = other.mint()
    assert await reason_for(make_verifier(issuer, jwks_path), token) == "token signed by an unknown key"


async def test_token_signed_by_another_key_with_a_known_kid_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    impostor = LocalTokenIssuer(kid=issuer.kid)  # same kid, different key pair
    token = impostor.mint("admin", roles={"manager"})
    assert await reason_for(make_verifier(issuer, jwks_path), token) == "invalid token signature"


async def test_alg_none_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    token = forged({"alg": "none", "typ": "JWT", "kid": issuer.kid}, claims_for(issuer))
    assert "'none' is not allowed" in await reason_for(make_verifier(issuer, jwks_path), token)


async def test_hs256_signed_with_the_public_key_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    public_pem = issuer.current_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    unsigned = forged(header, claims_for(issuer)).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    token = f"{unsigned}.{b64(signature)}"
    assert "'HS256' is not allowed" in await reason_for(make_verifier(issuer, jwks_path), token)


async def test_tampered_claims_rejected(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    header, _, signature = issuer.mint("customer-1").split(".")
    claims = b64(json.dumps(claims_for(issuer, sub="customer-1", roles=["manager"])).encode())
    token = f"{header}.{claims}.{signature}"
    assert await reason_for(make_verifier(issuer, jwks_path), token) == "invalid token signature"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..."])
async def test_malformed_tokens_rejected(issuer: LocalTokenIssuer, jwks_path: Path, token: str) -> None:
    await reason_for(make_verifier(issuer, jwks_path), token)


async def test_new_kid_is_picked_up_by_a_jwks_refresh(tmp_path: Path) -> None:
    rotating = LocalTokenIssuer(kid="k1")
    path = rotating.write_jwks(tmp_path / "jwks.json")
    verifier = make_verifier(rotating, path, min_refresh_s=0.0)
    assert (await verifier.verify(rotating.mint())).subject == "customer-1"  # loads k1
    rotating.rotate("k2")
    rotating.write_jwks(path)
    assert (await verifier.verify(rotating.mint())).subject == "customer-1"  # unknown k2 -> reload


async def test_jwks_refresh_is_rate_limited(tmp_path: Path) -> None:
    rotating = LocalTokenIssuer(kid="k1")
    path = rotating.write_jwks(tmp_path / "jwks.json")
    verifier = make_verifier(rotating, path, min_refresh_s=3600)
    await verifier.verify(rotating.mint())
    rotating.rotate("k2")
    rotating.write_jwks(path)
    # The key exists now, but a flood of unknown kids must not reload the JWKS each time.
    assert await reason_for(verifier, rotating.mint()) == "token signed by an unknown key"


async def test_no_jwks_configured_rejects_every_token(issuer: LocalTokenIssuer) -> None:
    verifier = JwtVerifier.from_settings(KitSettings(jwks_source=""))
    assert await reason_for(verifier, issuer.mint()) == "token signed by an unknown key"


async def test_unreadable_jwks_is_unavailable(issuer: LocalTokenIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path / "missing.json")
    with pytest.raises(errors.Unavailable):
        await verifier.verify(issuer.mint())


def test_roles_helpers() -> None:
    manager = Caller(subject="m-1", roles=frozenset({"manager"}))
    customer = Caller(subject="c-1", roles=frozenset({"customer"}))
    assert require_role(manager, "manager") is manager
    assert require_role(customer, "manager", "customer") is customer
    with pytest.raises(errors.PermissionDenied):
        require_role(customer, "manager")
    with pytest.raises(errors.Unauthenticated):
        require_role(ANONYMOUS, "customer")
    with pytest.raises(errors.Unauthenticated):
        require_authenticated(ANONYMOUS)
    assert require_authenticated(customer) is customer


async def test_roles_claim_as_space_separated_string(issuer: LocalTokenIssuer, jwks_path: Path) -> None:
    token = issuer.mint(extra_claims={"roles": "customer manager"})
    caller = await make_verifier(issuer, jwks_path).verify(token)
    assert caller.roles == frozenset({"customer", "manager"})


def test_current_caller_defaults_to_anonymous_and_follows_acting_as() -> None:
    assert current_caller() is ANONYMOUS
    caller = Caller(subject="c-1")
    with acting_as(caller):
        assert current_caller() is caller
    assert current_caller() is ANONYMOUS


def test_bearer_token_parsing() -> None:
    assert bearer_token((("authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("Authorization", "bearer  abc "),)) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token((("x-other", "Bearer abc"),)) is None
    assert bearer_token(None) is None


def test_public_methods() -> None:
    verifier = JwtVerifier.from_settings(KitSettings())
    interceptor = AuthInterceptor(verifier, ["cinema.movie.v1.MovieService/ListMovies", "/cinema.board.v1.Board/*"])
    assert interceptor.is_public("/cinema.movie.v1.MovieService/ListMovies")
    assert not interceptor.is_public("/cinema.movie.v1.MovieService/RegisterMovie")
    assert interceptor.is_public("/cinema.board.v1.Board/GetBoard")
    assert interceptor.is_public("/grpc.health.v1.Health/Check")
    assert interceptor.is_public("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
