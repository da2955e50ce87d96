"""services.kit.oauth_client on a stand-in token endpoint (httpx.MockTransport) and a fake clock:
caching, refresh at 80 % of the life, single flight, the stale-token grace and the clear
Unavailable when no token can be had. The real identity service is in the integration tests."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from pathlib import Path

import httpx
import pytest

from services.kit import errors
from services.kit.oauth_client import ClientCredentialsTokenSource

URL = "http://identity.test/oauth2/token"


class Endpoint:
    """A token endpoint whose answers the test chooses; it counts the requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.status = 200
        self.expires_in = 100
        self.delay_s = 0.0
        self.down = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "invalid_client"}, headers={"Retry-After": "7"})
        number = len(self.requests)
        return httpx.Response(
            200, json={"access_token": f"token-{number}", "token_type": "Bearer", "expires_in": self.expires_in}
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def source(endpoint: Endpoint, clock: Clock, **options: object) -> ClientCredentialsTokenSource:
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return ClientCredentialsTokenSource(
        URL,
        "reservation",
        secret="s3cr:t+",
        client=client,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


async def test_fetches_once_with_basic_auth_and_caches(endpoint: Endpoint, clock: Clock) -> None:
    tokens = source(endpoint, clock, scope="service")
    assert await tokens.token() == "token-1"
    assert await tokens.token() == "token-1"
    [request] = endpoint.requests
    user, _, secret = base64.b64decode(request.headers["authorization"].removeprefix("Basic ")).decode().partition(":")
    assert (urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret)) == ("reservation", "s3cr:t+")
    assert urllib.parse.parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["service"],
    }


async def test_refreshes_at_80_percent_of_the_life(endpoint: Endpoint, clock: Clock) -> None:
    tokens = source(endpoint, clock)
    assert await tokens.token() == "token-1"
    clock.now += 79
    assert await tokens.token() == "token-1"
    clock.now += 1
    assert await tokens.token() == "token-2"
    assert len(endpoint.requests) == 2


async def test_concurrent_callers_share_one_request(endpoint: Endpoint, clock: Clock) -> None:
    endpoint.delay_s = 0.05
    tokens = source(endpoint, clock)
    got = await asyncio.gather(*(tokens.token() for _ in range(50)))
    assert set(got) == {"token-1"} and len(endpoint.requests) == 1
    clock.now += 90
    got = await asyncio.gather(*(tokens.token() for _ in range(50)))
    assert set(got) == {"token-2"} and len(endpoint.requests) == 2


async def test_identity_down_means_unavailable_with_a_retry_hint_and_no_hammering(
    endpoint: Endpoint, clock: Clock
) -> None:
    endpoint.down = True
    tokens = source(endpoint, clock, retry_after_s=2.0)
    with pytest.raises(errors.Unavailable) as raised:
        await tokens.token()
    assert raised.value.reason == "TOKEN_ENDPOINT_UNAVAILABLE" and raised.value.retry_after_s == 2.0
    assert "unreachable" in raised.value.message
    for _ in range(20):  # within the hint: answered without asking again
        with pytest.raises(errors.Unavailable):
            await tokens.token()
    assert len(endpoint.requests) == 1
    clock.now += 2
    endpoint.down = False
    assert await tokens.token() == "token-2"


async def test_a_failed_refresh_keeps_the_still_valid_token(endpoint: Endpoint, clock: Clock) -> None:
    tokens = source(endpoint, clock)
    assert await tokens.token() == "token-1"
    endpoint.down = True
    clock.now += 85  # past 80 %: refresh due, but the token is valid for 15 s more
    assert await tokens.token() == "token-1"
    clock.now += 10  # within the 5 s expiry margin: no longer handed out
    with pytest.raises(errors.Unavailable):
        await tokens.token()


async def test_refused_credentials_are_reported_as_such(endpoint: Endpoint, clock: Clock) -> None:
    endpoint.status = 401
    tokens = source(endpoint, clock)
    with pytest.raises(errors.Unavailable) as raised:
        await tokens.token()
    assert raised.value.reason == "CLIENT_CREDENTIALS_REFUSED"
    assert "invalid_client" in raised.value.message and raised.value.retry_after_s >= 5


async def test_server_errors_carry_their_retry_after(endpoint: Endpoint, clock: Clock) -> None:
    endpoint.status = 503
    with pytest.raises(errors.Unavailable) as raised:
        await source(endpoint, clock).token()
    assert raised.value.retry_after_s == 7


async def test_the_secret_file_is_read_at_each_fetch(endpoint: Endpoint, clock: Clock, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("first\n")
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    tokens = ClientCredentialsTokenSource(URL, "reservation", secret_file=secret_file, client=client, clock=clock)
    await tokens.token()
    secret_file.write_text("second\n")
    clock.now += 90
    await tokens.token()
    secrets = [base64.b64decode(r.headers["authorization"][6:]).decode().split(":")[1] for r in endpoint.requests]
    assert secrets == ["first", "second"]
    secret_file.unlink()
    clock.now += 200
    with pytest.raises(errors.Unavailable, match="cannot read the client secret file"):
        await tokens.token()


def test_exactly_one_way_to_give_the_secret() -> None:
    with pytest.raises(ValueError):
        ClientCredentialsTokenSource(URL, "x")
    with pytest.raises(ValueError):
        ClientCredentialsTokenSource(URL, "x", secret="a", secret_file=Path("b"))
