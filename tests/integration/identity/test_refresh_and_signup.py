"""Refresh tokens (rotating, reuse revokes the family, RFC 7009 revocation), customer sign-up, and
the next signing key published one JWKS cache period before it signs: over real HTTP on a real
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.identity.domain.refresh import refresh_token_digest
from services.identity.service_layer import accounts
from services.kit import errors
from services.kit.auth import JwksCache, JwtVerifier, jwks_source_from
from tests.integration.identity.conftest import RunningIdentity, start_identity
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration

CUSTOMER = accounts.DEMO_USERS[0]


async def sign_in(http: httpx.AsyncClient, identity: RunningIdentity, username: str, password: str) -> dict[str, str]:
    form = {"grant_type": "password", "username": username, "password": password}
    response = await http.post(identity.token_url, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def refresh(http: httpx.AsyncClient, identity: RunningIdentity, token: str, **extra: str) -> httpx.Response:
    return await http.post(identity.token_url, data={"grant_type": "refresh_token", "refresh_token": token, **extra})


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_grant" and body["code"] == 16, body
    assert "sign in again" in body["error_description"]


async def test_a_refresh_token_rotates_and_the_new_access_token_is_the_same_person(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    first = await sign_in(http, identity, CUSTOMER.username, CUSTOMER.password)
    renewed = await refresh(http, identity, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert renewed.headers["cache-control"] == "no-store"
    body = renewed.json()
    assert body["refresh_token"] != first["refresh_token"] and body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    check = identity.verifier()
    before, after = await check.verify(first["access_token"]), await check.verify(body["access_token"])
    assert after.subject == before.subject and after.roles == {"customer"}
    assert after.claims["email"] == CUSTOMER.email and after.claims["jti"] != before.claims["jti"]
    # the next one works too, and only a digest of any of them is stored
    third = await refresh(http, identity, body["refresh_token"])
    assert third.status_code == 200, third.text
    conn = await asyncpg.connect(identity.app.settings.database_url)
    try:
        stored = await conn.fetch("SELECT digest FROM refresh_tokens")
        values = {first["refresh_token"], body["refresh_token"], third.json()["refresh_token"]}
        assert all(bytes(row["digest"]) not in {v.encode() for v in values} for row in stored)
        assert {refresh_token_digest(v) for v in values} <= {bytes(row["digest"]) for row in stored}
    finally:
        await conn.close()


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    first = await sign_in(http, identity, CUSTOMER.username, CUSTOMER.password)
    other_session = await sign_in(http, identity, CUSTOMER.username, CUSTOMER.password)
    second = (await refresh(http, identity, first["refresh_token"])).json()["refresh_token"]
    # a thief replays the first one: refused, and the legitimate holder's newer one dies with it
    assert_invalid_grant(await refresh(http, identity, first["refresh_token"]))
    assert_invalid_grant(await refresh(http, identity, second))
    # another sign-in of the same person is another family: untouched
    assert (await refresh(http, identity, other_session["refresh_token"])).status_code == 200


async def test_concurrent_uses_of_one_refresh_token_give_one_new_token(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    first = await sign_in(http, identity, CUSTOMER.username, CUSTOMER.password)
    answers = await asyncio.gather(*(refresh(http, identity, first["refresh_token"]) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400, 400], [a.text for a in answers]


async def test_a_refresh_may_narrow_the_scope_but_not_widen_it(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    await accounts.add_user(identity.app.deps, "two-hats", "a-hat-for-each-day", ["customer", "manager"])
    signed = await sign_in(http, identity, "two-hats", "a-hat-for-each-day")
    narrowed = await refresh(http, identity, signed["refresh_token"], scope="customer")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "customer"
    wider = await refresh(http, identity, narrowed.json()["refresh_token"], scope="customer manager")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope", wider.text


async def test_revocation_follows_rfc_7009(identity: RunningIdentity, http: httpx.AsyncClient) -> None:
    signed = await sign_in(http, identity, CUSTOMER.username, CUSTOMER.password)
    revoke_url = f"{identity.url}/oauth2/revoke"
    once = await http.post(revoke_url, data={"token": signed["refresh_token"], "token_type_hint": "refresh_token"})
    assert once.status_code == 200 and once.headers["cache-control"] == "no-store"
    assert_invalid_grant(await refresh(http, identity, signed["refresh_token"]))
    # revoking again, an unknown token or an access token: 200, nothing to do (RFC 7009 §2.2)
    for token in (signed["refresh_token"], "never-issued", signed["access_token"]):
        assert (await http.post(revoke_url, data={"token": token})).status_code == 200
    # a refresh token's successor is revoked with the family
    again = await sign_in(http, identity, CUSTOMER.username, CUSTOMER.password)
    successor = (await refresh(http, identity, again["refresh_token"])).json()["refresh_token"]
    assert (await http.post(revoke_url, data={"token": again["refresh_token"]})).status_code == 200
    assert_invalid_grant(await refresh(http, identity, successor))
    # protocol errors are RFC 6749 errors that are also google.rpc.Status
    missing = await http.post(revoke_url, data={"token_type_hint": "refresh_token"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request" and missing.json()["code"] == 3
    odd_hint = await http.post(revoke_url, data={"token": "x", "token_type_hint": "id_token"})
    assert odd_hint.status_code == 400 and odd_hint.json()["error"] == "unsupported_token_type"
    wrong_method = await http.get(revoke_url)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


async def test_a_refresh_token_issued_to_a_client_is_that_clients_only(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    form = {
        "grant_type": "password",
        "username": CUSTOMER.username,
        "password": CUSTOMER.password,
        "client_id": "reservation",
        "client_secret": identity.client_secret,
    }
    signed = (await http.post(identity.token_url, data=form)).json()
    # without the client's authentication: refused, and the family is gone
    assert_invalid_grant(await refresh(http, identity, signed["refresh_token"]))
    again = (await http.post(identity.token_url, data=form)).json()
    renewed = await refresh(
        http, identity, again["refresh_token"], client_id="reservation", client_secret=identity.client_secret
    )
    assert renewed.status_code == 200, renewed.text
    assert (await identity.verifier().verify(renewed.json()["access_token"])).claims["client_id"] == "reservation"


async def test_a_customer_signs_up_and_signs_in_with_the_address(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    accounts_url = f"{identity.url}/v1/accounts"
    created = await http.post(accounts_url, json={"email": "Ada.Lovelace@Example.com", "password": "analytical-engine"})
    assert created.status_code == 201, created.text
    account = created.json()["account"]
    assert account["email"] == account["username"] == "ada.lovelace@example.com"
    assert account["roles"] == ["customer"] and created.headers["location"] == f"/v1/accounts/{account['id']}"
    signed = await sign_in(http, identity, "ada.lovelace@example.com", "analytical-engine")
    caller = await identity.verifier().verify(signed["access_token"])
    assert caller.subject == account["id"] and caller.roles == {"customer"}
    assert caller.claims["email"] == "ada.lovelace@example.com"
    # the same address in another case: ALREADY_EXISTS, nothing written
    again = await http.post(accounts_url, json={"email": "ADA.LOVELACE@example.com", "password": "another-password-1"})
    assert again.status_code == 409, again.text
    assert again.json()["code"] == 6
    assert again.json()["message"] == "an account with this e-mail address already exists"
    assert again.json()["details"][0]["@type"] == "type.googleapis.com/google.rpc.ResourceInfo"
    assert (await sign_in(http, identity, "ada.lovelace@example.com", "analytical-engine"))["access_token"]


@pytest.mark.parametrize(
    ("body", "fields", "words"),
    [
        ({"email": "not-an-address", "password": "analytical-engine"}, {"email"}, "e-mail address"),
        ({"email": "babbage@example.com", "password": "short"}, {"password"}, "at least 12 characters"),
        ({"email": "babbage@example.com", "password": "babbage-rules-ok"}, {"password"}, "must not contain"),
        ({"email": "babbage@example.com", "password": "aaaaaaaaaaaaaaaa"}, {"password"}, "too easy"),
        ({"email": "", "password": ""}, {"email", "password"}, "required"),
        ({"password": "analytical-engine"}, {"email"}, "required"),
    ],
)
async def test_sign_up_refusals_say_what_is_wrong(
    identity: RunningIdentity, http: httpx.AsyncClient, body: dict[str, str], fields: set[str], words: str
) -> None:
    refused = await http.post(f"{identity.url}/v1/accounts", json=body)
    assert refused.status_code == 400, refused.text
    status = refused.json()
    assert status["code"] == 3 and words in status["message"], status
    [bad_request] = [d for d in status["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert {v["field"] for v in bad_request["fieldViolations"]} == fields
    assert "password:" not in status["message"]  # log redaction would blank it


async def test_sign_up_refuses_what_is_not_a_json_sign_up(identity: RunningIdentity, http: httpx.AsyncClient) -> None:
    url = f"{identity.url}/v1/accounts"
    as_form = await http.post(url, data={"email": "x@example.com", "password": "analytical-engine"})
    assert as_form.status_code == 400 and as_form.json()["code"] == 3 and "not valid JSON" in as_form.json()["message"]
    # as the REST gateway, the content type is not insisted on (curl -d sends a form's)
    curl_like = await http.post(
        url,
        content=b'{"email": "curl.user@example.com", "password": "analytical-engine"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert curl_like.status_code == 201, curl_like.text
    not_json = await http.post(url, content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
    a_list = await http.post(url, json=["x"])
    assert a_list.status_code == 400
    typed = await http.post(url, json={"email": 7, "password": "analytical-engine"})
    assert typed.status_code == 400
    huge = await http.post(url, json={"email": "x@example.com", "password": "p" * 5000})
    assert huge.status_code == 400 and "larger than" in huge.json()["message"]
    listed = await http.get(url)
    assert listed.status_code == 405 and listed.json()["code"] == 12
    unknown = await http.get(f"{identity.url}/oauth2/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["code"] == 5


async def test_sign_up_can_be_closed(postgres_server: Server, http: httpx.AsyncClient) -> None:
    database = await create_database(postgres_server, "identity_closed")
    running = await start_identity(database, signup_enabled=False)
    try:
        refused = await http.post(
            f"{running.url}/v1/accounts", json={"email": "ada@example.com", "password": "analytical-engine"}
        )
        assert refused.status_code == 403 and refused.json()["code"] == 7, refused.text
    finally:
        await running.server.stop()


async def test_admin_add_user_gives_a_manager_an_email_claim(
    identity: RunningIdentity, http: httpx.AsyncClient
) -> None:
    await accounts.add_user(
        identity.app.deps, "floor-manager", "a-managers-password", ["manager"], "Floor.Manager@Example.com"
    )
    signed = await sign_in(http, identity, "floor-manager", "a-managers-password")
    caller = await identity.verifier().verify(signed["access_token"])
    assert caller.roles == {"manager"} and caller.claims["email"] == "floor.manager@example.com"
    with pytest.raises(errors.AlreadyExists, match="e-mail address"):
        await accounts.add_user(
            identity.app.deps, "second-manager", "a-managers-password", ["manager"], "floor.manager@example.com"
        )
    with pytest.raises(errors.InvalidArgument, match="email"):
        await accounts.add_user(identity.app.deps, "third-manager", "a-managers-password", ["manager"], "nope")


async def test_a_freshly_activated_key_verifies_with_a_jwks_fetched_before_its_activation(
    postgres_server: Server, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    database = await create_database(postgres_server, "identity_prepublish")
    running = await start_identity(database, key_publish_ahead_s=2, jwks_max_age_s=1, key_cache_s=5)
    try:
        before = await sign_in(http, running, CUSTOMER.username, CUSTOMER.password)
        [old_kid] = [key["kid"] for key in (await http.get(running.jwks_url)).json()["keys"]]
        new_kid = await running.app.rotate_now()
        # the JWKS as a verifier caches it right after the rotation, frozen in a file from now on
        snapshot = (await http.get(running.jwks_url)).json()
        assert [key["kid"] for key in snapshot["keys"]] == [new_kid, old_kid]
        frozen = tmp_path / "jwks.json"
        frozen.write_text(json.dumps(snapshot))
        stale = JwtVerifier(
            JwksCache(jwks_source_from(str(frozen)), min_refresh_s=3600),
            issuer=running.issuer,
            audience="cinema",
            algorithms=("RS256",),
        )
        # until the activation the old key still signs (every replica, whatever it cached) ...
        waiting = await sign_in(http, running, CUSTOMER.username, CUSTOMER.password)
        assert _kid_of(waiting["access_token"]) == old_kid
        await asyncio.sleep(2.2)
        # ... then the new one, and a verifier that never fetched again accepts its tokens
        after = await sign_in(http, running, CUSTOMER.username, CUSTOMER.password)
        assert _kid_of(after["access_token"]) == new_kid
        for token in (before["access_token"], waiting["access_token"], after["access_token"]):
            assert (await stale.verify(token)).subject
        # a pending key is never rotated again by the housekeeping, and --immediately signs at once
        assert await running.app.housekeeping_round() is None
        urgent = await running.app.rotate_now(immediately=True)
        assert _kid_of((await sign_in(http, running, CUSTOMER.username, CUSTOMER.password))["access_token"]) == urgent
        with pytest.raises(errors.Unauthenticated, match="unknown key"):
            await stale.verify((await sign_in(http, running, CUSTOMER.username, CUSTOMER.password))["access_token"])
    finally:
        await running.server.stop()


def _kid_of(token: str) -> str:
    import base64

    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])
