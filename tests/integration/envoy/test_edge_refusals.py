"""The edge's own refusals through the real Envoy in front of the real services, REST and gRPC:
every one a google.rpc.Status JSON body (code, message, ErrorInfo; RetryInfo where a retry
helps; WWW-Authenticate on 401) or, for gRPC, the matching status code; unknown paths 404 and
unknown gRPC services UNIMPLEMENTED (not a stream closed without trailers); and the per-client
rate limits: one client flooding leaves another's polite reads served.

No gateway runs here: a REST request the edge lets through ends as 503 (no healthy upstream),
itself one of the edge's refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2_grpc

from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from mesh import policy
from tests.integration.envoy.conftest import Edge
from tests.integration.envoy.proxy import EnvoyProxy

pytestmark = pytest.mark.integration

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def status_body(reply: httpx.Response) -> dict[str, Any]:
    """The google.rpc.Status of a refusal, checked for its shape."""
    assert reply.headers["content-type"].startswith("application/json"), (reply.status_code, reply.text)
    body: dict[str, Any] = reply.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], int) and 1 <= body["code"] <= 16, body
    assert isinstance(body["message"], str) and body["message"], body
    assert all(
        isinstance(d, dict) and d["@type"].startswith("type.googleapis.com/google.rpc.") for d in body["details"]
    )
    return body


def reason(body: dict[str, Any]) -> tuple[str, str]:
    (info,) = [d for d in body["details"] if d["@type"] == ERROR_INFO]
    return info["reason"], info["domain"]


@pytest.fixture
async def rest(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{edge.envoy.ingress}", timeout=10) as client:
        yield client


async def test_an_unknown_path_is_404_even_without_a_token(rest: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/v1/no-such-thing"), ("POST", "/v1/movies/x/y/z"), ("GET", "/wp-admin.php")):
        reply = await rest.request(method, path)
        assert reply.status_code == 404, (method, path, reply.status_code, reply.text)
        body = status_body(reply)
        assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert reason(body) == ("ROUTE_NOT_FOUND", "cinema")


async def test_no_token_is_401_with_a_bearer_challenge(rest: httpx.AsyncClient, edge: Edge) -> None:
    reply = await rest.post("/v1/reservations", json={})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    body = status_body(reply)
    assert body["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0] and body["message"] == "Jwt is missing"
    assert reason(body) == ("UNAUTHENTICATED", "cinema")
    bad = await rest.get("/v1/reservations", headers={"authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401 and status_body(bad)["code"] == 16


async def test_no_healthy_upstream_is_503_with_a_retry_hint(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/board")  # the gateway does not run here
    assert reply.status_code == 503
    body = status_body(reply)
    assert body["code"] == grpc.StatusCode.UNAVAILABLE.value[0] and reason(body) == ("UNAVAILABLE", "cinema")
    assert {"@type": RETRY_INFO, "retryDelay": "1s"} in body["details"]
    assert reply.headers["retry-after"] == "1"


async def test_headers_over_the_limit_are_431(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/movies", headers={"x-padding": "a" * 70_000})
    assert reply.status_code == 431
    body = status_body(reply)
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and reason(body)[0] == "HEADERS_TOO_LARGE"


async def test_grpc_to_a_service_the_ingress_does_not_expose_is_unimplemented(edge: Edge) -> None:
    async with grpc.aio.insecure_channel(edge.envoy.ingress) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as payment:
            await payment_pb2_grpc.PaymentServiceStub(channel).GetPaymentByReservation(
                payment_pb2.GetPaymentByReservationRequest(reservation_id="r"), metadata=edge.token(), timeout=5
            )
        assert payment.value.code() == grpc.StatusCode.UNIMPLEMENTED, payment.value
        # server reflection at the ingress: the catalog of services is not for strangers
        # The ingress refuses on the request's headers, often before the client's first message
        # is sent; grpcio then reports its own failed send as INTERNAL ("Failed execute_batch"),
        # hiding the status the ingress sent. So the call only half-closes (which grpcio does not
        # turn into a status of its own) and is read for the status the ingress sent.
        reflected = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=5)
        with contextlib.suppress(Exception):  # the refusal may already have ended the call
            await reflected.done_writing()
        assert await reflected.code() == grpc.StatusCode.UNIMPLEMENTED, await reflected.details()
        # an unknown method of an exposed service is the service's own UNIMPLEMENTED
        unknown = channel.unary_unary(
            "/cinema.movie.v1.MovieService/NoSuchMethod", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.aio.AioRpcError) as method:
            await unknown(b"", metadata=edge.token(), timeout=5)
        assert method.value.code() == grpc.StatusCode.UNIMPLEMENTED, method.value


async def test_grpc_refusals_keep_their_codes(edge: Edge) -> None:
    async with grpc.aio.insecure_channel(edge.envoy.ingress) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await reservation_pb2_grpc.ReservationServiceStub(channel).ListReservations(
                reservation_pb2.ListReservationsRequest(), timeout=5
            )
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert missing.value.details() == "Jwt is missing"  # plain text in grpc-message, not JSON


# --- fair rate limits ------------------------------------------------------------------------------


def small_limits(edge: Edge, name: str) -> EnvoyProxy:
    """Per client 10 reads (+10/s) and 4 writes (+2/s); the total is large."""
    return edge.new_envoy(
        name,
        rate_limit=policy.EdgeRateLimit(
            total=policy.RateLimit.per_second(10_000),
            reads=policy.RateLimit(max_tokens=10, tokens_per_fill=10, fill_interval_ms=1000),
            writes=policy.RateLimit(max_tokens=4, tokens_per_fill=2, fill_interval_ms=1000),
            max_clients=100,
        ),
    )


async def flood(target: str, stop: asyncio.Event, *, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """As fast as 20 callers can: ListMovies until told to stop; the codes seen."""
    codes: list[str] = []
    async with grpc.aio.insecure_channel(target) as channel:
        movies = movie_pb2_grpc.MovieServiceStub(channel)

        async def caller() -> None:
            while not stop.is_set():
                try:
                    await movies.ListMovies(movie_pb2.ListMoviesRequest(), metadata=metadata, timeout=5)
                    codes.append("OK")
                except grpc.aio.AioRpcError as err:
                    codes.append(err.code().name)

        await asyncio.gather(*(caller() for _ in range(20)))
    return codes


async def polite_rest_reads(base: str, local_address: str, count: int) -> list[int]:
    """A read every 0.2 s from another client address (REST; no gateway here: 503 means served
    by the edge's routing, 429 means refused by the limit)."""
    statuses = []
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=5) as client:
        for _ in range(count):
            statuses.append((await client.get("/v1/movies")).status_code)
            await asyncio.sleep(0.2)
    return statuses


async def polite_grpc_reads(target: str, metadata: tuple[tuple[str, str], ...], count: int) -> list[str]:
    codes = []
    async with grpc.aio.insecure_channel(target) as channel:
        movies = movie_pb2_grpc.MovieServiceStub(channel)
        for _ in range(count):
            try:
                await movies.ListMovies(movie_pb2.ListMoviesRequest(), metadata=metadata, timeout=5)
                codes.append("OK")
            except grpc.aio.AioRpcError as err:
                codes.append(err.code().name)
            await asyncio.sleep(0.2)
    return codes


async def test_one_client_flooding_leaves_anothers_polite_reads_served(edge: Edge) -> None:
    proxy = small_limits(edge, "envoy-fair")
    await proxy.start()
    try:
        stop = asyncio.Event()
        greedy = asyncio.create_task(flood(proxy.ingress, stop))  # anonymous, from 127.0.0.1
        await asyncio.sleep(1)  # the flood has spent its bucket
        started = time.monotonic()
        # another anonymous client (another address) and a signed-in one (the same address as the
        # flood, its own subject): both polite, 5 reads a second, inside their own budgets
        neighbour, customer = await asyncio.gather(
            polite_rest_reads(f"http://{proxy.ingress}", "127.0.0.2", 25),
            polite_grpc_reads(proxy.ingress, edge.token("polite-customer"), 25),
        )
        stop.set()
        flooded = await greedy
        assert time.monotonic() - started < 30
        assert flooded.count("RESOURCE_EXHAUSTED") > len(flooded) / 2, "the flood was not limited"
        served = sum(1 for s in neighbour if s != 429)
        assert served >= 0.9 * len(neighbour), neighbour
        assert customer.count("OK") >= 0.9 * len(customer), customer
        # and a write budget apart from the reads: the flood's reads left the customer's writes alone
        async with grpc.aio.insecure_channel(proxy.ingress) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as write:
                await movie_pb2_grpc.MovieServiceStub(channel).DeleteMovie(
                    movie_pb2.DeleteMovieRequest(movie_id="00000000-0000-4000-8000-000000000000"),
                    metadata=edge.token("polite-customer"),
                    timeout=5,
                )
            assert write.value.code() == grpc.StatusCode.PERMISSION_DENIED  # the service's answer, not the limit's
    finally:
        await proxy.stop()


async def test_a_signed_in_client_is_limited_by_its_subject_not_its_address(edge: Edge) -> None:
    proxy = small_limits(edge, "envoy-subject")
    await proxy.start()
    try:
        stop = asyncio.Event()
        greedy = asyncio.create_task(flood(proxy.ingress, stop, metadata=edge.token("greedy")))
        await asyncio.sleep(1)
        polite = await polite_grpc_reads(proxy.ingress, edge.token("polite"), 15)
        stop.set()
        flooded = await greedy
        assert flooded.count("RESOURCE_EXHAUSTED") > len(flooded) / 2
        assert polite.count("OK") >= 0.9 * len(polite), polite
        # over the limit REST gets 429 with RetryInfo (the same client: its subject)
        async with httpx.AsyncClient(timeout=5) as client:
            replies = [
                await client.get(
                    f"http://{proxy.ingress}/v1/movies", headers={"authorization": edge.token("greedy")[0][1]}
                )
                for _ in range(15)
            ]
        limited = [r for r in replies if r.status_code == 429]
        assert limited, [r.status_code for r in replies]
        body = status_body(limited[0])
        assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert reason(body) == ("RATE_LIMITED", "cinema")
        assert {"@type": RETRY_INFO, "retryDelay": "1s"} in body["details"]
        assert limited[0].headers["retry-after"] == "1"
    finally:
        await proxy.stop()
