"""The token endpoint over real HTTP: both grants, every RFC 6749 §5.2 error, throttling, metrics."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from services.identity.service_layer import accounts
from services.kit.auth import JwksCache, JwtVerifier, UrlJwksSource
from tests.integration.identity.conftest import RunningIdentity

pytestmark = pytest.mark.integration

CUSTOMER = accounts.DEMO_USERS[0]
MANAGER = accounts.DEMO_USERS[1]


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def verifier_for(identity: RunningIdentity) -> JwtVerifier:
    return JwtVerifier(
        JwksCache(UrlJwksSource(identity.jwks_url), min_refresh_s=0),
        issuer=identity.issuer,
        audience="cinema",
        algorithms=("RS256",),
    )


async def password_token(
    http: httpx.AsyncClient,
    identity: RunningIdentity,
    username: str,
    password: str,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password, **extra}
    return await http.post(identity.token_url, data=form, headers=headers)


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    assert response.headers["cache-control"] == "no-store"
    # also a google.rpc.Status, as every other refusal at the edge
    assert isinstance(body["code"], int) and body["code"] > 0 and body["message"] == body["error_description"]
    assert any(d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" for d in body["details"]), body


async def test_password_grant_gives_a_verifiable_customer_token(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    response = await password_token(http, identity, CUSTOMER.username, CUSTOMER.password)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert "scope" not in body
    assert len(body["refresh_token"]) >= 43 and body["refresh_token_expires_in"] == 14 * 86400
    caller = await verifier_for(identity).verify(body["access_token"])
    claims = caller.claims
    assert caller.roles == {"customer"}
    assert claims["iss"] == identity.issuer == identity.url
    assert claims["aud"] == "cinema"
    assert claims["preferred_username"] == CUSTOMER.username
    assert claims["email"] == CUSTOMER.email
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["jti"] and claims["sub"] != CUSTOMER.username  # sub: the stable user id, not the name
    again = await password_token(http, identity, CUSTOMER.username.upper(), CUSTOMER.password)
    assert (await verifier_for(identity).verify(again.json()["access_token"])).subject == caller.subject
    assert (await verifier_for(identity).verify(again.json()["access_token"])).claims["jti"] != claims["jti"]


async def test_client_credentials_by_basic_and_by_form(identity: RunningIdentity, http: httpx.AsyncClient) -> None:
    by_basic = await http.post(
        identity.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic("reservation", identity.client_secret),
    )
    by_form = await http.post(
        identity.token_url,
        data={"grant_type": "client_credentials", "client_id": "reservation", "client_secret": identity.client_secret},
    )
    for response in (by_basic, by_form):
        assert response.status_code == 200, response.text
        assert response.json()["expires_in"] == 3600
        caller = await verifier_for(identity).verify(response.json()["access_token"])
        assert caller.subject == "reservation"
        assert caller.roles == {"service"}
        assert caller.claims["client_id"] == "reservation"


async def test_a_basic_secret_with_reserved_characters_is_form_decoded(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    _client, secret = await accounts.add_client(identity.app.deps, "odd-tool", ["service"], secret="a:b+c d%/é")
    encoded = "odd-tool:" + "a%3Ab%2Bc+d%25%2F%C3%A9"  # RFC 6749 §2.3.1: urlencoded before base64
    headers = {"Authorization": "Basic " + base64.b64encode(encoded.encode()).decode()}
    response = await http.post(identity.token_url, data={"grant_type": "client_credentials"}, headers=headers)
    assert response.status_code == 200, response.text
    assert secret == "a:b+c d%/é"


async def test_scope_narrows_roles_and_unknown_or_excess_scope_is_invalid_scope(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    await accounts.add_user(identity.app.deps, "both-roles", "two-hats-person", ["customer", "manager"])
    narrowed = await password_token(http, identity, "both-roles", "two-hats-person", scope="customer")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "customer"
    caller = await verifier_for(identity).verify(narrowed.json()["access_token"])
    assert caller.roles == {"customer"}
    assert caller.claims["scope"] == "customer"
    unknown = await password_token(http, identity, "both-roles", "two-hats-person", scope="customer admin")
    assert_oauth_error(unknown, 400, "invalid_scope")
    excess = await password_token(http, identity, CUSTOMER.username, CUSTOMER.password, scope="manager")
    assert_oauth_error(excess, 400, "invalid_scope")


async def test_wrong_password_and_unknown_user_are_the_same_invalid_grant(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    wrong = await password_token(http, identity, MANAGER.username, "not-the-password")
    unknown = await password_token(http, identity, "nobody-here", "not-the-password")
    malformed = await password_token(http, identity, "x", "not-the-password")
    for response in (wrong, unknown, malformed):
        assert_oauth_error(response, 400, "invalid_grant")
        assert response.json()["error_description"] == "invalid username or password"


async def test_an_unknown_user_takes_about_as_long_as_a_wrong_password(
    identity_db: str, http: httpx.AsyncClient
) -> None:
    from tests.integration.identity.conftest import start_identity

    # Real argon2 cost here, so the difference would show if the dummy verification were skipped.
    running = await start_identity(
        identity_db + "", argon2_time_cost=2, argon2_memory_kib=32768, argon2_parallelism=1, lockout_threshold=100
    )
    try:
        await accounts.add_user(running.app.deps, "timing-user", "a-good-password", ["customer"])

        async def timed(username: str) -> float:
            started = time.perf_counter()
            response = await password_token(http, running, username, "wrong-password-1")
            assert response.status_code == 400
            return time.perf_counter() - started

        await timed("timing-user")
        known = sorted([await timed("timing-user") for _ in range(5)])[2]
        unknown = sorted([await timed("no-such-user") for _ in range(5)])[2]
        assert unknown > known * 0.5, (known, unknown)
        assert known > 0.01, known  # argon2 really ran
    finally:
        await running.server.stop()


@pytest.mark.parametrize(
    ("headers", "form", "status", "error"),
    [
        ({}, {}, 400, "invalid_request"),  # no grant_type
        ({}, {"grant_type": ""}, 400, "invalid_request"),  # empty = omitted
        ({}, {"grant_type": "authorization_code", "code": "x"}, 400, "unsupported_grant_type"),
        ({}, {"grant_type": "refresh_token", "refresh_token": "x"}, 400, "invalid_grant"),
        ({}, {"grant_type": "refresh_token"}, 400, "invalid_request"),
        ({}, {"grant_type": "password", "username": "demo-customer"}, 400, "invalid_request"),
        ({}, {"grant_type": "password", "password": "popcorn-customer"}, 400, "invalid_request"),
        ({}, {"grant_type": "client_credentials"}, 401, "invalid_client"),  # no client authentication
        ({}, {"grant_type": "client_credentials", "client_secret": "s"}, 400, "invalid_request"),
        ({}, {"grant_type": "client_credentials", "client_id": "reservation", "client_secret": "bad"}, 401,
         "invalid_client"),
        ({}, {"grant_type": "client_credentials", "client_id": "ghost", "client_secret": "bad"}, 401, "invalid_client"),
        (basic("reservation", "bad"), {"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({"Authorization": "Basic !!!"}, {"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({"Authorization": "Bearer abc"}, {"grant_type": "client_credentials"}, 401, "invalid_client"),
        (basic("reservation", "x"), {"grant_type": "client_credentials", "client_id": "r", "client_secret": "x"}, 400,
         "invalid_request"),
        ({}, {"grant_type": "client_credentials", "scope": "superuser"}, 400, "invalid_scope"),
    ],
)  # fmt: skip
async def test_rfc6749_errors(
    identity: RunningIdentity,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = await http.post(identity.token_url, data=form, headers=headers)
    assert_oauth_error(response, status, error)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


async def test_protocol_errors_of_the_request_itself(identity: RunningIdentity, http: httpx.AsyncClient) -> None:
    form = {"grant_type": "password", "username": CUSTOMER.username, "password": CUSTOMER.password}
    for method in ("GET", "PUT", "DELETE"):
        response = await http.request(method, identity.token_url, params=form)
        assert_oauth_error(response, 405, "invalid_request")
        assert response.headers["allow"] == "POST"
    as_json = await http.post(identity.token_url, json=form)
    assert_oauth_error(as_json, 400, "invalid_request")
    no_type = await http.post(identity.token_url, content=b"grant_type=password")
    assert_oauth_error(no_type, 400, "invalid_request")
    repeated = await http.post(
        identity.token_url,
        content=b"grant_type=password&username=demo-customer&password=popcorn-customer&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(repeated, 400, "invalid_request")
    not_utf8 = await http.post(
        identity.token_url,
        content=b"grant_type=password&username=%ff%fe&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert not_utf8.status_code == 400
    too_big = await http.post(identity.token_url, data={**form, "padding": "x" * 5000})
    assert_oauth_error(too_big, 413, "invalid_request")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"a" * 1000

    streamed = await http.post(
        identity.token_url, content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )  # chunked: no Content-Length to refuse early
    assert_oauth_error(streamed, 413, "invalid_request")
    with_charset = await http.post(
        identity.token_url,
        content=httpx.QueryParams(form).__str__().encode(),
        headers={"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=utf-8"},
    )
    assert with_charset.status_code == 200, with_charset.text


def from_address(address: str) -> dict[str, str]:
    """What the edge Envoy adds for a client at `address` (this test talks to identity from
    127.0.0.1, a trusted proxy address, as the ingress does)."""
    return {"x-envoy-external-address": address}


async def test_repeated_failures_lock_out_that_address_only_with_exponential_backoff(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    await accounts.add_user(identity.app.deps, "forgetful", "the-right-password", ["customer"])
    stranger, owner = from_address("203.0.113.66"), from_address("198.51.100.7")
    for _ in range(3):  # lockout_threshold=3 in this module
        wrong = await password_token(http, identity, "forgetful", "wrong-guess-123", headers=stranger)
        assert_oauth_error(wrong, 400, "invalid_grant")
    locked = await password_token(http, identity, "forgetful", "the-right-password", headers=stranger)
    assert_oauth_error(locked, 429, "invalid_grant")
    assert 1 <= int(locked.headers["retry-after"]) <= 2  # lockout_s=2
    # the refusal is a google.rpc.Status too: RESOURCE_EXHAUSTED, RetryInfo, ErrorInfo
    body = locked.json()
    assert body["code"] == 8 and body["message"] == body["error_description"]
    kinds = {detail["@type"].rsplit(".", 1)[1]: detail for detail in body["details"]}
    assert kinds["RetryInfo"]["retryDelay"] in {"1s", "2s"}
    assert kinds["ErrorInfo"]["reason"] == "TOO_MANY_ATTEMPTS" and kinds["ErrorInfo"]["domain"] == "cinema"
    # the owner, elsewhere, signs in all along: a stranger cannot lock anyone out
    assert (await password_token(http, identity, "forgetful", "the-right-password", headers=owner)).status_code == 200
    other = await password_token(http, identity, CUSTOMER.username, CUSTOMER.password, headers=stranger)
    assert other.status_code == 200  # only that account is locked for that address
    # after the lockout, each further failure doubles it: 2 s, then 4 s
    await asyncio.sleep(2.1)
    again = await password_token(http, identity, "forgetful", "wrong-guess-456", headers=stranger)
    assert_oauth_error(again, 400, "invalid_grant")
    longer = await password_token(http, identity, "forgetful", "the-right-password", headers=stranger)
    assert_oauth_error(longer, 429, "invalid_grant")
    assert 3 <= int(longer.headers["retry-after"]) <= 4
    record = await identity.app.deps.attempts.get("user:forgetful|203.0.113.66")
    assert record is not None and record.failures == 4
    assert await identity.app.deps.attempts.get("user:forgetful|198.51.100.7") is None  # its success cleared it
    await asyncio.sleep(4.1)
    unlocked = await password_token(http, identity, "forgetful", "the-right-password", headers=stranger)
    assert unlocked.status_code == 200, unlocked.text
    # the success cleared the count: one more failure does not lock again
    after = await password_token(http, identity, "forgetful", "wrong-again-123", headers=stranger)
    assert_oauth_error(after, 400, "invalid_grant")
    assert (
        await password_token(http, identity, "forgetful", "the-right-password", headers=stranger)
    ).status_code == 200


async def test_the_client_address_header_counts_only_from_a_trusted_proxy(
    identity_db: str, http: httpx.AsyncClient
) -> None:
    from tests.integration.identity.conftest import start_identity

    # 127.0.0.1 is not trusted here: the header is ignored and every guess counts for the peer
    running = await start_identity(identity_db, lockout_threshold=2, lockout_s=30, trusted_proxies="10.0.0.0/8")
    try:
        await accounts.add_user(running.app.deps, "spoofed", "the-right-password", ["customer"])
        for n in range(2):
            forged = from_address(f"192.0.2.{n}")  # a new address every time: it does not help
            refused = await password_token(http, running, "spoofed", "wrong-guess-123", headers=forged)
            assert_oauth_error(refused, 400, "invalid_grant")
        locked = await password_token(http, running, "spoofed", "the-right-password", headers=from_address("192.0.2.9"))
        assert_oauth_error(locked, 429, "invalid_grant")
        assert await running.app.deps.attempts.get("user:spoofed|127.0.0.1") is not None
    finally:
        await running.server.stop()


async def test_concurrent_failures_all_count(identity: RunningIdentity, http: httpx.AsyncClient) -> None:
    await accounts.add_user(identity.app.deps, "hammered", "the-right-password", ["customer"])
    responses = await asyncio.gather(
        *(password_token(http, identity, "hammered", f"guess-{i}-wrong") for i in range(8))
    )
    assert {r.status_code for r in responses} <= {400, 429}
    record = await identity.app.deps.attempts.get("user:hammered|127.0.0.1")  # no header: the peer
    assert record is not None
    # every verified failure counted (those refused as locked were never verified)
    assert record.failures == sum(1 for r in responses if r.status_code == 400)
    assert record.failures >= 3 and record.locked_until is not None


async def test_metrics_count_issued_and_refused_by_grant_and_reason(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    await password_token(http, identity, CUSTOMER.username, CUSTOMER.password)
    await password_token(http, identity, CUSTOMER.username, "nope-nope-nope")
    await http.post(identity.token_url, data={"grant_type": "implicit"})
    text = (await http.get(f"{identity.url}/metrics")).text
    assert 'identity_tokens_issued_total{grant_type="password"}' in text
    assert 'identity_tokens_refused_total{grant_type="password",reason="invalid_grant"}' in text
    assert 'identity_tokens_refused_total{grant_type="unknown",reason="unsupported_grant_type"}' in text
    assert 'identity_token_request_seconds_bucket{grant_type="password"' in text


async def test_health(identity: RunningIdentity, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{identity.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "serving"}
