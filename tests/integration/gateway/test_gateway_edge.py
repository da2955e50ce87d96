"""The gateway's own behaviour, against the contracts and a stand-in payment service: every
google.api.http rule routed and documented, metadata forwarded (and nothing else), deadlines,
error details, lazy connection, graceful SIGTERM, configuration errors.

The stand-in is a real grpc.aio server on a real socket in this test process (the generated
PaymentService servicer), so a test can hold a call open or see the metadata it received.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import any_pb2, descriptor_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]

from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from scripts.stack.paths import REPO
from scripts.stack.process import free_port
from tests.integration.gateway.conftest import Gateway, start_gateway

pytestmark = pytest.mark.integration

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
Context = grpc.aio.ServicerContext[Any, Any]


class StandInPayments(payment_pb2_grpc.PaymentServiceServicer):
    """GetPayment answers by the payment id it is asked for: `slow-<s>` after s seconds,
    `details` with error details (one of a type nobody knows), `busy` UNAVAILABLE with RetryInfo,
    anything else at once. Every call's metadata is kept."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.received = asyncio.Event()

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.GetPaymentResponse:
        self.calls.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        self.received.set()
        pid = request.payment_id
        if pid.startswith("slow-"):
            await asyncio.sleep(float(pid.removeprefix("slow-")))
        elif pid == "details":
            unknown = any_pb2.Any(type_url="type.googleapis.com/cinema.nowhere.v1.Secret", value=b"\x08\x01")
            bad = any_pb2.Any()
            bad.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field="payment_id", description="not a UUID")
                    ]
                )
            )
            await abort_with(context, code_pb2.INVALID_ARGUMENT, "payment_id is not a UUID", [unknown, bad])
        elif pid == "busy":
            retry = any_pb2.Any()
            retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2)))
            await abort_with(context, code_pb2.UNAVAILABLE, "the card processor is unavailable", [retry])
        return payment_pb2.GetPaymentResponse(payment=payment_pb2.Payment(id=pid, reservation_id="r-1"))

    async def AuthorizePayment(
        self, request: payment_pb2.AuthorizePaymentRequest, context: Context
    ) -> payment_pb2.AuthorizePaymentResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the stand-in")

    async def GetPaymentByReservation(
        self, request: payment_pb2.GetPaymentByReservationRequest, context: Context
    ) -> payment_pb2.GetPaymentByReservationResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the stand-in")


async def abort_with(context: Context, code: int, message: str, details: list[any_pb2.Any]) -> None:
    status = status_pb2.Status(code=code, message=message, details=details)
    await context.abort(
        grpc.StatusCode(next(c.value for c in grpc.StatusCode if c.value[0] == code)),
        message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


async def serve_stand_in(port: int = 0) -> tuple[grpc.aio.Server, StandInPayments, str]:
    server = grpc.aio.server()
    payments = StandInPayments()
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(payments, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, payments, f"127.0.0.1:{bound}"


@pytest.fixture(scope="module")
async def stand_in() -> AsyncIterator[tuple[StandInPayments, str]]:
    server, payments, address = await serve_stand_in()
    yield payments, address
    await server.stop(0)


@pytest.fixture(scope="module")
def edge_gateway(gateway_binary: Path, gateway_root: Path, stand_in: tuple[StandInPayments, str]) -> Iterator[Gateway]:
    """A gateway whose payment upstream is the stand-in; every other service is down."""
    gw = start_gateway(gateway_binary, gateway_root, {"payment": stand_in[1]}, GATEWAY_CALL_TIMEOUT_S="1.5")
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def http_rules(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str, str]]:
    """(operation id, verb, path template, body) of every RPC with a google.api.http rule, from
    the contracts as buf compiles them (not from a list kept by hand)."""
    out = tmp_path_factory.mktemp("descriptors") / "image.binpb"
    subprocess.run(
        [str(Path(sys.executable).parent / "buf"), "build", "protos", "--as-file-descriptor-set", "-o", str(out)],
        cwd=REPO,
        check=True,
        timeout=120,
    )
    rules = []
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        if not file.name.startswith("cinema/"):
            continue
        for service in file.service:
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
                    verb = rule.WhichOneof("pattern")
                    rules.append((f"{service.name}_{method.name}", verb, getattr(rule, verb), rule.body))
    assert len(rules) >= 27
    return rules


def openapi_path(template: str) -> str:
    """protoc-gen-openapiv2 names path variables by their JSON names: {movie_id} -> {movieId}."""
    return re.sub(r"\{([a-z_.]+)\}", lambda m: "{" + re.sub(r"_([a-z])", lambda c: c[1].upper(), m[1]) + "}", template)


async def test_openapi_documents_every_http_rule_once(
    edge_gateway: Gateway, http_rules: list[tuple[str, str, str, str]]
) -> None:
    async with httpx.AsyncClient(base_url=edge_gateway.url, timeout=10) as http:
        reply = await http.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    assert doc["swagger"] == "2.0"
    assert doc["info"]["title"] == "Cinema API"
    documented = {(op["operationId"], verb, path) for path, item in doc["paths"].items() for verb, op in item.items()}
    expected = {(op_id, verb, openapi_path(template)) for op_id, verb, template, _ in http_rules}
    assert documented == expected
    assert "rpcStatus" in doc["definitions"]
    assert {t["name"] for t in doc["tags"]} == {
        "MovieService",
        "ReviewService",
        "ReservationService",
        "PaymentService",
        "NotificationService",
        "BoardService",
    }


async def test_every_http_rule_is_routed_to_its_service(
    gateway_binary: Path, gateway_root: Path, http_rules: list[tuple[str, str, str, str]]
) -> None:
    """With every service down the gateway still starts, and each REST route reaches its
    upstream: 503 UNAVAILABLE naming the right service, never 404/405 (an unregistered route)."""
    gw = start_gateway(gateway_binary, gateway_root, {})
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            for op_id, verb, template, body in http_rules:
                path = re.sub(r"\{[^}]+\}", "probe-1", template)
                reply = await http.request(
                    verb.upper(), path, content=b"{}" if body else None, headers={"Authorization": "Bearer x"}
                )
                assert reply.status_code == 503, (op_id, path, reply.text)
                assert reply.json()["code"] == 14
                service = op_id.split("_")[0]
                assert f".{service}" in reply.json()["message"], (op_id, reply.text)
    finally:
        assert gw.stop() == 0


async def test_docs_page_is_self_contained(edge_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=edge_gateway.url, timeout=10) as http:
        reply = await http.get("/docs")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.text
    assert "<html" in page
    assert 'fetch("/openapi.json")' in page
    assert "http://" not in page and "https://" not in page  # no CDN, nothing fetched from elsewhere
    assert "<script src" not in page and "<link" not in page
    assert "connect-src 'self'" in reply.headers["content-security-policy"]


async def test_authorization_trace_context_and_request_id_reach_the_service(
    edge_gateway: Gateway, stand_in: tuple[StandInPayments, str]
) -> None:
    payments, _ = stand_in
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    headers = {
        "Authorization": "Bearer a.b.c",
        "traceparent": traceparent,
        "tracestate": "cinema=t1",
        "x-request-id": "req-forwarded-1",
        # Not forwarded: a client must not be able to set metadata a service would trust.
        "X-Role": "manager",
        "Grpc-Metadata-Role": "manager",
    }
    async with httpx.AsyncClient(base_url=edge_gateway.url, timeout=10) as http:
        reply = await http.get("/v1/payments/p-1", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["payment"]["id"] == "p-1"
    seen = payments.calls[-1]
    assert seen["authorization"] == "Bearer a.b.c"
    assert seen["traceparent"] == traceparent
    assert seen["tracestate"] == "cinema=t1"
    assert seen["x-request-id"] == "req-forwarded-1"
    assert "x-role" not in seen and "role" not in seen and "grpc-metadata-role" not in seen


async def test_a_request_without_trace_context_starts_one(
    edge_gateway: Gateway, stand_in: tuple[StandInPayments, str]
) -> None:
    payments, _ = stand_in
    async with httpx.AsyncClient(base_url=edge_gateway.url, timeout=10) as http:
        reply = await http.get("/v1/payments/p-2", headers={"traceparent": "not-a-traceparent"})
    assert reply.status_code == 200
    seen = payments.calls[-1]
    assert TRACEPARENT.match(seen["traceparent"]), seen
    assert seen["x-request-id"] == reply.headers["x-request-id"]
    trace_id = seen["traceparent"].split("-")[1]
    logged = [line for line in edge_gateway.log_lines() if line.get("request_id") == seen["x-request-id"]]
    assert logged and logged[0]["trace_id"] == trace_id


async def test_error_details_are_kept_and_unknown_ones_dropped(edge_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=edge_gateway.url, timeout=10) as http:
        bad = await http.get("/v1/payments/details")
        busy = await http.get("/v1/payments/busy")
    assert bad.status_code == 400, bad.text
    body = bad.json()
    assert body["code"] == 3 and body["message"] == "payment_id is not a UUID"
    [detail] = body["details"]  # the detail of an unknown type is gone, the BadRequest kept
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert [(v["field"], v["description"]) for v in detail["fieldViolations"]] == [("payment_id", "not a UUID")]
    # A service's own UNAVAILABLE (not a dial failure) passes unchanged, with its retry hint.
    assert busy.status_code == 503, busy.text
    assert busy.json()["message"] == "the card processor is unavailable"
    assert busy.json()["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]


async def test_call_deadline_gives_504(edge_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=edge_gateway.url, timeout=10) as http:
        reply = await http.get("/v1/payments/slow-3")
    assert reply.status_code == 504, reply.text
    assert reply.json()["code"] == 4


async def test_service_that_comes_up_late_is_reached(gateway_binary: Path, gateway_root: Path) -> None:
    """Lazy connection: the gateway starts with payment down (503), and reaches it within a few
    seconds of it coming up, without a restart."""
    port = free_port()
    gw = start_gateway(gateway_binary, gateway_root, {"payment": f"127.0.0.1:{port}"})
    server = None
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            assert (await http.get("/v1/payments/p-3")).status_code == 503
            server, _, _ = await serve_stand_in(port)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8
            status = 503
            while status == 503 and loop.time() < deadline:
                await asyncio.sleep(0.2)
                status = (await http.get("/v1/payments/p-3")).status_code
            assert status == 200
    finally:
        if server is not None:
            await server.stop(0)
        gw.stop()


async def wait_exit(gw: Gateway, within_s: float) -> int:
    """The exit code, waited for without blocking the loop (the stand-in serves on it)."""
    popen = gw.process.popen
    assert popen is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while popen.poll() is None:
        assert loop.time() < deadline, "the gateway did not exit"
        await asyncio.sleep(0.05)
    return popen.returncode


async def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    gateway_binary: Path, gateway_root: Path, stand_in: tuple[StandInPayments, str]
) -> None:
    payments, address = stand_in
    gw = start_gateway(gateway_binary, gateway_root, {"payment": address}, GATEWAY_SHUTDOWN_TIMEOUT_S="10")
    popen = gw.process.popen
    assert popen is not None
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=15) as http:
            payments.received.clear()
            in_flight = asyncio.create_task(http.get("/v1/payments/slow-1.5"))
            await asyncio.wait_for(payments.received.wait(), 5)
            popen.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            # Draining: no new connections accepted.
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(base_url=gw.url, timeout=2) as fresh:
                    await fresh.get("/healthz")
            reply = await in_flight
            assert reply.status_code == 200, reply.text
            assert reply.json()["payment"]["id"] == "slow-1.5"
        assert await wait_exit(gw, 10) == 0
        messages = [line.get("message") for line in gw.log_lines()]
        assert "gateway stopping" in messages and messages[-1] == "gateway stopped"
    finally:
        gw.stop()


def test_bad_configuration_stops_the_gateway_with_exit_2(gateway_binary: Path) -> None:
    result = subprocess.run(
        [str(gateway_binary)],
        env={"GATEWAY_HTTP_PORT": "http", "GATEWAY_MOVIE_ADDRESS": "nowhere"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["level"] == "ERROR"
    assert "GATEWAY_HTTP_PORT" in line["error"] and "GATEWAY_MOVIE_ADDRESS" in line["error"]
