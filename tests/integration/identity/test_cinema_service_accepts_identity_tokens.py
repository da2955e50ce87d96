"""A real Cinema service process (payment, `python -m services.payment`) configured with only
identity's issuer and JWKS URL: it accepts identity's tokens by role, and rejects expired ones,
ones signed by another key, `alg: none` and HS256-with-the-public-key. The reservation service's
payment gateway gets its service token from identity (client credentials) and pays through it."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from cinema.payment.v1 import payment_pb2_grpc
from scripts.stack.process import free_port
from scripts.stack.services import ServiceProcess
from services.kit.oauth_client import ClientCredentialsTokenSource
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.domain.processor import CARD_APPROVED
from services.reservation.adapters.payment import GrpcPaymentGateway
from services.reservation.domain.values import Money
from services.reservation.service_layer.ports import PaymentCard, PaymentStatus, PaymentUnavailable
from tests.integration.identity.conftest import RunningIdentity
from tests.integration.payment.helpers import authorize_request
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration

NEXT_YEAR = datetime.now(UTC).year + 1


@pytest.fixture(scope="module")
async def payment(
    identity: RunningIdentity, postgres_server: Server, nats_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    database = await create_database(postgres_server, "payment_for_identity")
    port = free_port()
    env = {
        "PAYMENT_DATABASE_URL": database,
        "PAYMENT_NATS_URL": nats_server.url,
        "PAYMENT_GRPC_PORT": str(port),
        "PAYMENT_METRICS_PORT": str(free_port()),
        "PAYMENT_DRAIN_S": "0.1",
        # all a service knows of identity: where its keys are, who issues, for whom
        "PAYMENT_JWKS_SOURCE": identity.jwks_url,
        "PAYMENT_JWT_ISSUER": identity.issuer,
        "PAYMENT_JWT_AUDIENCE": "cinema",
        "PAYMENT_JWT_LEEWAY_S": "0",
        "PAYMENT_JWKS_MIN_REFRESH_S": "0",
    }
    process = ServiceProcess("payment", port, env, tmp_path_factory.mktemp("payment-proc") / "payment.log")
    process.start()
    yield process
    process.stop()


async def token_for(http: httpx.AsyncClient, identity: RunningIdentity, form: dict[str, str]) -> str:
    response = await http.post(identity.token_url, data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def identity_signed(identity: RunningIdentity, **claims: object) -> str:
    """A token signed by identity's real active key with the claims we choose."""
    key = await identity.app.tokens._active_key.current()
    now = int(time.time())
    base = {"iss": identity.issuer, "aud": "cinema", "sub": "reservation", "roles": ["service"], "iat": now}
    return identity.app.deps.signer.sign(key.kid, key.algorithm, key.private_jwk, {**base, **claims})


async def test_payment_accepts_identity_tokens_by_role_and_rejects_bad_ones(
    identity: RunningIdentity, payment: ServiceProcess, http: httpx.AsyncClient
) -> None:
    service = await token_for(
        http,
        identity,
        {"grant_type": "client_credentials", "client_id": "reservation", "client_secret": identity.client_secret},
    )
    customer = await token_for(
        http, identity, {"grant_type": "password", "username": "demo-customer", "password": "popcorn-customer"}
    )
    jwks = (await http.get(identity.jwks_url)).json()
    kid = jwks["keys"][0]["kid"]
    now = int(time.time())
    header_none = b64url(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
    claims = {"iss": identity.issuer, "aud": "cinema", "sub": "reservation", "roles": ["service"], "exp": now + 300}
    alg_none = f"{header_none}.{b64url(json.dumps(claims).encode())}."
    public_pem = json.dumps(jwks["keys"][0]).encode()
    hs256 = jwt.encode({"alg": "HS256", "kid": kid}, claims, OctKey.import_key(public_pem), algorithms=["HS256"])
    impostor = LocalTokenIssuer(issuer=identity.issuer, kid=kid)  # same kid and issuer, another key
    other_key = impostor.mint("reservation", roles={"service"})
    expired = await identity_signed(identity, exp=now - 5, iat=now - 100)
    wrong_audience = await identity_signed(identity, exp=now + 300, aud="someone-else")

    async with grpc.aio.insecure_channel(payment.address) as channel:
        stub = payment_pb2_grpc.PaymentServiceStub(channel)
        ok = await stub.AuthorizePayment(authorize_request(), metadata=bearer(service), timeout=10)
        assert ok.payment.id
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.AuthorizePayment(authorize_request(), metadata=bearer(customer), timeout=10)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        for token in (None, expired, other_key, alg_none, hs256, wrong_audience, service[:-4] + "AAAA"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.AuthorizePayment(authorize_request(), metadata=bearer(token) if token else (), timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, (token, refused.value.details())

        # after a rotation the service learns the new key from the JWKS; old tokens still pass
        await identity.app.rotate_now()
        rotated = await token_for(
            http,
            identity,
            {"grant_type": "client_credentials", "client_id": "reservation", "client_secret": identity.client_secret},
        )
        for token in (service, rotated):
            assert (await stub.AuthorizePayment(authorize_request(), metadata=bearer(token), timeout=10)).payment.id


async def test_reservation_pays_with_a_client_credentials_token_from_identity(
    identity: RunningIdentity, payment: ServiceProcess, tmp_path: Path
) -> None:
    secret_file = tmp_path / "reservation.secret"
    secret_file.write_text(identity.client_secret + "\n")
    tokens = ClientCredentialsTokenSource(identity.token_url, "reservation", secret_file=secret_file)
    gateway = GrpcPaymentGateway(payment.address, tokens)
    card = PaymentCard(number=CARD_APPROVED, expiry_month=12, expiry_year=NEXT_YEAR, cvc="123")
    try:
        for _ in range(3):
            reservation_id = str(uuid.uuid4())
            result = await gateway.authorize(
                reservation_id, "customer-1", "c@example.test", Money(1200, "EUR"), card, deadline_s=10
            )
            assert result.status is PaymentStatus.APPROVED
            found = await gateway.find_by_reservation(reservation_id, deadline_s=10)
            assert found is not None and found.payment_id == result.payment_id
        assert tokens.fetches == 1  # one token, cached across six calls
    finally:
        await gateway.close()
        await tokens.close()


async def test_reservation_gets_payment_unavailable_when_identity_is_unreachable(
    payment: ServiceProcess, tmp_path: Path
) -> None:
    tokens = ClientCredentialsTokenSource(
        f"http://127.0.0.1:{free_port()}/oauth2/token", "reservation", secret="whatever", timeout_s=1
    )
    gateway = GrpcPaymentGateway(payment.address, tokens)
    card = PaymentCard(number=CARD_APPROVED, expiry_month=12, expiry_year=NEXT_YEAR, cvc="123")
    try:
        started = time.perf_counter()
        with pytest.raises(PaymentUnavailable, match="no service token"):
            await gateway.authorize(str(uuid.uuid4()), "c-1", "", Money(100, "EUR"), card, deadline_s=1)
        assert time.perf_counter() - started < 2
    finally:
        await gateway.close()
        await tokens.close()
