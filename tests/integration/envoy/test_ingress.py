"""The ingress listener with the real Envoy in front of the real services: JWT, routes, rate limit, admin.

Envoy's own refusals are told apart from the services' by their messages (`Jwt is missing`,
`Jwt verification fails`, ...): a test that only saw UNAUTHENTICATED could not tell whether the
mesh or the service said it. REST has no gateway behind it here, so a REST request that passed
the JWT rules ends as 503 (no healthy gateway) and one that did not as 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import httpx
import pytest

from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from mesh import policy
from mesh.envoy import JwksUrl
from scripts.stack.process import free_port
from services.kit.testing_tokens import LocalTokenIssuer
from tests.integration.envoy import forged
from tests.integration.envoy.conftest import Edge, Metadata

pytestmark = pytest.mark.integration

# jwt_authn's messages (the services' own say "missing bearer token", "invalid token signature", ...)
ENVOY_JWT_MESSAGES = ("Jwt ", "Jwks ", "Audiences in Jwt")


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def channel(edge: Edge) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(edge.envoy.ingress) as ch:
        yield ch


def refused_by_envoy(err: grpc.aio.AioRpcError) -> bool:
    if (err.details() or "") == "Audiences in Jwt are not allowed":
        # jwt_authn answers 403 to a token minted for someone else (so does Istio, the same filter)
        return err.code() == grpc.StatusCode.PERMISSION_DENIED
    return err.code() == grpc.StatusCode.UNAUTHENTICATED and (err.details() or "").startswith(ENVOY_JWT_MESSAGES)


async def test_public_read_needs_no_token(channel: grpc.aio.Channel) -> None:
    movies = movie_pb2_grpc.MovieServiceStub(channel)
    reply = await movies.ListMovies(movie_pb2.ListMoviesRequest(), timeout=5)
    assert list(reply.movies) == []
    reservations = reservation_pb2_grpc.ReservationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the service answered: no such screening
        await reservations.GetSeatAvailability(
            reservation_pb2.GetSeatAvailabilityRequest(screening_id=str(uuid.uuid4())), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_protected_rpc_without_token_is_refused_by_envoy(edge: Edge, channel: grpc.aio.Channel) -> None:
    stub = reservation_pb2_grpc.ReservationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListReservations(reservation_pb2.ListReservationsRequest(), timeout=5)
    assert refused_by_envoy(caught.value), (caught.value.code(), caught.value.details())
    assert caught.value.details() == "Jwt is missing"
    line = await edge.envoy.log_line(lambda line: (line["path"] or "").endswith("/ListReservations"))
    assert line["details"] == "jwt_authn_access_denied{Jwt_is_missing}"
    assert line["grpc_status"] == "Unauthenticated" and line["upstream_host"] is None


async def test_a_valid_token_reaches_the_service_which_sees_the_caller(edge: Edge, channel: grpc.aio.Channel) -> None:
    stub = reservation_pb2_grpc.ReservationServiceStub(channel)
    newcomer = edge.token(f"customer-{uuid.uuid4().hex[:8]}")
    reply = await stub.ListReservations(reservation_pb2.ListReservationsRequest(), metadata=newcomer, timeout=5)
    assert list(reply.reservations) == []  # the service answered for this caller: none of theirs yet
    # Envoy forwards the token: the service itself refuses a customer a manager's RPC
    movies = movie_pb2_grpc.MovieServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await movies.DeleteMovie(
            movie_pb2.DeleteMovieRequest(movie_id=str(uuid.uuid4())), metadata=edge.token(), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("kind", list(forged.every(LocalTokenIssuer())))
async def test_a_bad_token_is_refused_even_on_a_public_read(edge: Edge, channel: grpc.aio.Channel, kind: str) -> None:
    token = forged.every(edge.identity.issuer)[kind]
    reservations = reservation_pb2_grpc.ReservationServiceStub(channel)
    movies = movie_pb2_grpc.MovieServiceStub(channel)
    for call in (
        reservations.ListReservations(reservation_pb2.ListReservationsRequest(), metadata=bearer(token), timeout=5),
        movies.ListMovies(movie_pb2.ListMoviesRequest(), metadata=bearer(token), timeout=5),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert refused_by_envoy(caught.value), (kind, caught.value.code(), caught.value.details())


async def test_rest_paths_follow_the_public_methods(edge: Edge) -> None:
    """No gateway runs here: 503 means the JWT rules let the request through, 401 that they did not."""
    movie_id = str(uuid.uuid4())
    base = f"http://{edge.envoy.ingress}"
    token = forged.expired(edge.identity.issuer)
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for route in policy.public_rest_routes(edge.envoy.mesh.public_grpc_methods):
            path = route.path.replace("{*}", movie_id)
            reply = await client.request(route.method, path)
            assert reply.status_code == 503, (route, reply.status_code, reply.text)
            reply = await client.request(route.method, path, headers={"authorization": "Bearer not-a-jwt"})
            assert reply.status_code == 401, (route, reply.status_code)
            reply = await client.request(route.method, path, headers={"authorization": f"Bearer {token}"})
            assert reply.status_code == 401, (route, reply.status_code)
        for method, path in (
            ("POST", "/v1/movies"),
            ("DELETE", f"/v1/movies/{movie_id}"),
            ("GET", "/v1/reservations"),
            ("GET", "/v1/board/reservations"),
            ("GET", "/v1/notifications"),
            ("POST", f"/v1/screenings/{movie_id}:cancel"),
        ):
            reply = await client.request(method, path)
            assert reply.status_code == 401, (method, path, reply.status_code)
            assert reply.json()["message"] == "Jwt is missing" and reply.json()["code"] == 16
            assert reply.headers["www-authenticate"].startswith("Bearer")
        # the edge's own public paths: the API documents and the OAuth2 endpoints, even with Basic auth
        for path in ("/openapi.json", "/docs", "/oauth2/token", "/.well-known/jwks.json"):
            reply = await client.get(path, headers={"authorization": "Basic Y2xpZW50OnNlY3JldA=="})
            assert reply.status_code == 503, (path, reply.status_code, reply.text)


async def test_over_the_rate_limit_grpc_gets_resource_exhausted_and_rest_429(edge: Edge) -> None:
    # one anonymous client (this address) and one signed-in one: each its own buckets
    bucket = policy.RateLimit(max_tokens=4, tokens_per_fill=4, fill_interval_ms=60_000)
    small = policy.EdgeRateLimit(total=bucket, reads=bucket, writes=bucket, max_clients=100)
    proxy = edge.new_envoy("envoy-rate-limit", rate_limit=small)
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(proxy.ingress) as ch:
            movies = movie_pb2_grpc.MovieServiceStub(ch)
            for _ in range(bucket.max_tokens):
                await movies.ListMovies(movie_pb2.ListMoviesRequest(), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await movies.ListMovies(movie_pb2.ListMoviesRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the ingress's total bucket (4) is spent too now: a request the client's own bucket
            # allows is refused by the total; a request the JWT filter refuses costs no token
            # (the JWT filters come first, as on Istio's ingress gateway)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await reservation_pb2_grpc.ReservationServiceStub(ch).ListReservations(
                    reservation_pb2.ListReservationsRequest(), metadata=edge.token(), timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await reservation_pb2_grpc.ReservationServiceStub(ch).ListReservations(
                    reservation_pb2.ListReservationsRequest(), timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"http://{proxy.ingress}/v1/movies")
        assert reply.status_code == 429
        assert reply.headers["x-rate-limited"] == "ingress"
        body = reply.json()
        assert body["code"] == 8 and body["details"][0]["reason"] == "RATE_LIMITED"
        assert body["details"][1] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
        assert await proxy.stat("ingress_rate_limit.http_local_rate_limit.rate_limited") >= 2
    finally:
        await proxy.stop()


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _other_addresses() -> set[str]:
    """This machine's addresses other than 127.0.0.1 (127.0.0.2 is loopback but another address)."""
    found = {"127.0.0.2"}
    with contextlib.suppress(OSError):
        found |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, the route picks our address
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return found - {"127.0.0.1", "0.0.0.0"}


async def test_admin_answers_on_127_0_0_1_only(edge: Edge) -> None:
    port = edge.envoy.options.admin_port
    assert await asyncio.to_thread(_connects, "127.0.0.1", port)
    others = _other_addresses()
    assert others
    for address in others:
        assert not await asyncio.to_thread(_connects, address, port), address
    async with httpx.AsyncClient(timeout=2) as client:
        reply = await client.get(f"{edge.envoy.admin}/server_info")
    assert reply.json()["state"] == "LIVE"


class _JwksServer:
    """identity's JWKS endpoint, stood in for by a plain HTTP server (started late on purpose)."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.fetches = 0

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.fetches += 1
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(self.document)}\r\n"
        writer.write(head.encode() + b"connection: close\r\n\r\n" + self.document)
        await writer.drain()
        writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_remote_jwks_fetched_once_identity_is_up(edge: Edge) -> None:
    """URL mode, as `make up` runs it: Envoy may start before identity; it keeps asking every second."""
    jwks = _JwksServer(edge.identity.jwks_path.read_bytes())
    proxy = edge.new_envoy("envoy-remote-jwks", jwks=JwksUrl(f"http://127.0.0.1:{jwks.port}/.well-known/jwks.json"))
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(proxy.ingress) as ch:
            stub = reservation_pb2_grpc.ReservationServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # no keys yet: no token can be valid
                await stub.ListReservations(reservation_pb2.ListReservationsRequest(), metadata=edge.token(), timeout=5)
            assert refused_by_envoy(caught.value)
            await jwks.start()
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                try:
                    await stub.ListReservations(
                        reservation_pb2.ListReservationsRequest(), metadata=edge.token(), timeout=5
                    )
                    break
                except grpc.aio.AioRpcError as err:
                    assert refused_by_envoy(err) and asyncio.get_running_loop().time() < deadline, err
                    await asyncio.sleep(0.2)
            assert jwks.fetches >= 1
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListReservations(
                    reservation_pb2.ListReservationsRequest(),
                    metadata=bearer(forged.wrong_signature(edge.identity.issuer)),
                    timeout=5,
                )
            assert refused_by_envoy(caught.value)
    finally:
        await proxy.stop()
        await jwks.stop()
