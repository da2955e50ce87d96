"""A fuzz pass over the edge's own error paths: whatever a client sends to the real Envoy ingress
(any method, any path, any headers, a token or garbage in their place, oversized headers, a
flood), every refusal the edge makes itself parses as a google.rpc.Status JSON (code, readable
message, ErrorInfo with domain "cinema", the code the HTTP status stands for), a 401 carries a
Bearer challenge, and a gRPC caller gets a status code, never INTERNAL or UNKNOWN (the "server
closed the stream without sending trailers" of an unrouted call).

The Envoy is rendered from helm/cinema/values.yaml with small rate limits, in front of NO
services: a request the edge lets through ends in its own 503 (no healthy upstream), which is
one of its refusals too. Bounded: a fixed derivation (CINEMA_FUZZ_SEED draws others) and
CINEMA_EDGE_FUZZ_EXAMPLES examples (default 150) per test.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mesh import policy
from scripts.stack.services import Identity
from scripts.stack.stores import scratch_dir
from tests.integration.envoy.proxy import EnvoyProxy

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CINEMA_EDGE_FUZZ_EXAMPLES", "150"))
SEED = os.environ.get("CINEMA_FUZZ_SEED")
# HTTP status -> the google.rpc code its body must carry (mesh.ingress.errors)
EXPECTED_CODE = {e.status: e.code for e in policy.load().errors}
SEEN: Counter[int] = Counter()


def edge_settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=False,
    )


@pytest.fixture(scope="module")
def envoy_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EnvoyProxy, Identity]]:
    root = scratch_dir("edge-fuzz")
    identity = Identity(root)
    bucket = policy.RateLimit(max_tokens=100, tokens_per_fill=100, fill_interval_ms=1000)
    proxy = EnvoyProxy.on_free_ports(
        root / "envoy",
        {},
        identity.jwks_path,
        identity.issuer.issuer,
        rate_limit=policy.EdgeRateLimit(total=bucket, reads=bucket, writes=bucket, max_clients=100),
        access_log=False,
    )
    asyncio.run(proxy.start())
    try:
        yield proxy, identity
    finally:
        asyncio.run(proxy.stop())
        print(f"\nedge fuzz: statuses seen {dict(sorted(SEEN.items()))}")


def refusal_problems(status: int, headers: httpx.Headers, body: bytes, *, head: bool = False) -> list[str]:
    """What is wrong with one of the edge's answers (nothing for a success or a good refusal);
    `head`: the answer to a HEAD, which has the headers of the refusal and no body."""
    if status < 400:
        return []
    problems = []
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append(f"{status}: content-type {headers.get('content-type')!r}")
    if head:
        return problems
    try:
        parsed: Any = httpx.Response(status, content=body).json()
    except ValueError:
        return [*problems, f"{status}: not JSON: {body[:200]!r}"]
    if not isinstance(parsed, dict) or set(parsed) != {"code", "message", "details"}:
        return [*problems, f"{status}: not a google.rpc.Status: {parsed!r}"]
    if status in EXPECTED_CODE and parsed["code"] != EXPECTED_CODE[status]:
        problems.append(f"{status}: code {parsed['code']}, expected {EXPECTED_CODE[status]}")
    if status not in EXPECTED_CODE:
        problems.append(f"{status}: a refusal mesh.ingress.errors does not name")
    if not isinstance(parsed["message"], str) or not parsed["message"].strip():
        problems.append(f"{status}: empty message")
    elif any(ord(c) < 0x20 for c in parsed["message"]):
        problems.append(f"{status}: control characters in the message")
    infos = [
        d for d in parsed["details"] if isinstance(d, dict) and d.get("@type", "").endswith("google.rpc.ErrorInfo")
    ]
    if len(infos) != 1 or infos[0].get("domain") != "cinema" or not infos[0].get("reason"):
        problems.append(f"{status}: ErrorInfo {infos!r}")
    if status == 401 and not headers.get("www-authenticate", "").startswith("Bearer"):
        problems.append("401 without a Bearer challenge")
    return problems


SEGMENT = st.one_of(
    st.sampled_from(["v1", "movies", "board", "reservations", "screenings", "reviews", "notifications", "oauth2",
                     "token", ".well-known", "jwks.json", "openapi.json", "docs", "manager", "mesh", "cancel"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:@!$&'()*+,;=%",
            min_size=0, max_size=12),
    st.uuids().map(str),
)  # fmt: skip
PATHS = st.lists(SEGMENT, min_size=0, max_size=6).map(lambda parts: "/" + "/".join(parts))
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def authorizations(identity: Identity) -> st.SearchStrategy[dict[str, str]]:
    token = identity.issuer.mint("fuzzer", roles={"customer"})
    return st.one_of(
        st.just({}),
        st.just({"authorization": f"Bearer {token}"}),
        HEADER_VALUE.map(lambda v: {"authorization": f"Bearer {v}"}),
        HEADER_VALUE.map(lambda v: {"authorization": v}),
    )


def test_every_rest_refusal_is_a_google_rpc_status(envoy_edge: tuple[EnvoyProxy, Identity]) -> None:
    proxy, identity = envoy_edge

    @edge_settings()
    @given(
        method=METHODS,
        path=PATHS,
        query=st.one_of(st.just(""), HEADER_VALUE.map(lambda q: "?" + q.replace("#", ""))),
        auth=authorizations(identity),
        extra=st.dictionaries(st.sampled_from(["x-a", "content-type", "accept", "x-request-id", "te"]), HEADER_VALUE,
                              max_size=3),
        padding=st.sampled_from([0, 0, 0, 70_000]),
        body=st.one_of(st.just(b""), st.binary(max_size=200)),
    )  # fmt: skip
    # each kind of refusal at least once, whatever the draws
    @example(method="POST", path="/v1/reservations", query="", auth={}, extra={}, padding=0, body=b"{}")
    @example(method="GET", path="/v1/reservations", query="", auth={"authorization": "Bearer x"}, extra={},
             padding=0, body=b"")  # fmt: skip
    @example(method="GET", path="/v1/no-such-thing", query="", auth={}, extra={}, padding=0, body=b"")
    @example(method="GET", path="/v1/board", query="", auth={}, extra={}, padding=0, body=b"")
    def one(
        method: str, path: str, query: str, auth: dict[str, str], extra: dict[str, str], padding: int, body: bytes
    ) -> None:
        # (h11 refuses to send a value with whitespace at either end)
        headers = {k: v.strip() for k, v in {**extra, **auth}.items()}
        if padding:
            headers["x-padding"] = "p" * padding
        try:
            reply = httpx.request(
                method, f"http://{proxy.ingress}{path}{query}", headers=headers, content=body or None, timeout=10
            )
        except httpx.RemoteProtocolError:
            return  # Envoy closed a connection it could not parse: no answer to judge
        except httpx.LocalProtocolError:
            return  # nothing a client library sends
        SEEN[reply.status_code] += 1
        problems = refusal_problems(reply.status_code, reply.headers, reply.content, head=method == "HEAD")
        assert not problems, (method, path + query, reply.status_code, reply.headers, reply.content[:300], problems)

    one()
    assert {401, 404, 503} <= set(SEEN), SEEN  # the run reached the refusals it is about


GRPC_SERVICES = st.one_of(
    st.sampled_from([
        "cinema.movie.v1.MovieService", "cinema.payment.v1.PaymentService", "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection",
        "cinema.reservation.v1.ReservationService", "cinema.viewpage.v1.BoardService",
    ]),
    st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,3}\.[A-Z][A-Za-z]{0,12}", fullmatch=True),
)  # fmt: skip
GRPC_METHODS = st.one_of(
    st.sampled_from(["ListMovies", "GetBoard", "Check", "ServerReflectionInfo", "GetPaymentByReservation"]),
    st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True),
)


def test_every_grpc_refusal_is_a_status_code(envoy_edge: tuple[EnvoyProxy, Identity]) -> None:
    proxy, identity = envoy_edge
    token = identity.issuer.mint("fuzzer", roles={"customer"})
    seen: Counter[str] = Counter()
    with grpc.insecure_channel(proxy.ingress) as channel:

        @edge_settings()
        @given(
            service=GRPC_SERVICES,
            method=GRPC_METHODS,
            payload=st.binary(max_size=64),
            auth=st.sampled_from(["none", "valid", "garbage"]),
        )
        def one(service: str, method: str, payload: bytes, auth: str) -> None:
            metadata = {"none": (), "valid": (("authorization", f"Bearer {token}"),),
                        "garbage": (("authorization", "Bearer x.y.z"),)}[auth]  # fmt: skip
            call = channel.unary_unary(f"/{service}/{method}", request_serializer=None, response_deserializer=None)
            try:
                call(payload, metadata=metadata, timeout=10)
            except grpc.RpcError as err:
                code = err.code()
                seen[code.name] += 1
                assert code in {
                    grpc.StatusCode.UNIMPLEMENTED,  # what the edge does not route
                    grpc.StatusCode.UNAUTHENTICATED,  # no or a bad token where one is needed
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAVAILABLE,  # routed, but no service runs here
                    grpc.StatusCode.RESOURCE_EXHAUSTED,  # the rate limit
                }, (service, method, auth, code, err.details())
                return
            raise AssertionError(f"/{service}/{method} answered without any service running")

        one()
    print(f"\nedge gRPC fuzz: codes seen {dict(seen)}")
    assert {"UNIMPLEMENTED", "UNAUTHENTICATED"} <= set(seen), seen
