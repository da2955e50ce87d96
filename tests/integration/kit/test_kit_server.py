"""A real ServiceHost on a free port: health, reflection, errors, auth, metrics, tracing."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest
from google.protobuf import empty_pb2, wrappers_pb2
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.kit import telemetry
from services.kit.grpc_errors import INTERNAL_MESSAGE, error_details, find_detail
from services.kit.server import ServiceHost
from services.kit.settings import KitSettings
from services.kit.testing_tokens import LocalTokenIssuer
from tests.integration.kit.kit_echo_service import PUBLIC_METHODS, SERVICE, method, register

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="module")
async def host(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceHost]:
    jwks: Path = issuer.write_jwks(tmp_path_factory.mktemp("jwks") / "jwks.json")
    settings = KitSettings(
        service_name="kit-test",
        grpc_port=0,
        metrics_port=0,
        jwks_source=str(jwks),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        drain_s=0,
        shutdown_grace_s=1,
    )
    async with ServiceHost(settings, register, public_methods=PUBLIC_METHODS) as running:
        yield running


@pytest.fixture(scope="module")
async def channel(host: ServiceHost) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(host.address, interceptors=telemetry.client_interceptors()) as chan:
        yield chan


@pytest.fixture(scope="module")
def customer(issuer: LocalTokenIssuer) -> tuple[tuple[str, str]]:
    return issuer.metadata(issuer.mint("customer-1", roles={"customer"}))


async def test_bound_port_is_real(host: ServiceHost) -> None:
    assert host.port > 0
    assert host.metrics_port is not None and host.metrics_port > 0
    assert host.service_names == (SERVICE,)


async def test_health_reports_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_health_watch_streams_through_the_interceptors(channel: grpc.aio.Channel) -> None:
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = set()
    async for response in call:
        names |= {service.name for service in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def call_fail(channel: grpc.aio.Channel, kind: str, metadata: tuple[tuple[str, str]]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method(channel, "Fail")(wrappers_pb2.StringValue(value=kind), metadata=metadata, timeout=5)
    return raised.value


@pytest.mark.parametrize(
    ("kind", "code", "detail_types"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, [error_details_pb2.BadRequest]),
        ("not_found", grpc.StatusCode.NOT_FOUND, [error_details_pb2.ResourceInfo]),
        ("exists", grpc.StatusCode.ALREADY_EXISTS, [error_details_pb2.ResourceInfo]),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION, [error_details_pb2.ErrorInfo]),
        ("denied", grpc.StatusCode.PERMISSION_DENIED, [error_details_pb2.ErrorInfo]),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, [error_details_pb2.RetryInfo, error_details_pb2.ErrorInfo]),
    ],
)
async def test_domain_errors_become_statuses_with_details(
    channel: grpc.aio.Channel,
    customer: tuple[tuple[str, str]],
    kind: str,
    code: grpc.StatusCode,
    detail_types: list[type],
) -> None:
    error = await call_fail(channel, kind, customer)
    assert error.code() is code
    assert [type(detail) for detail in error_details(error)] == detail_types


async def test_domain_error_details_read_back(channel: grpc.aio.Channel, customer: tuple[tuple[str, str]]) -> None:
    error = await call_fail(channel, "precondition", customer)
    assert error.details() == "seat A1 is taken"
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == ("SEAT_TAKEN", "cinema", {"seat": "A1"})
    error = await call_fail(channel, "unavailable", customer)
    retry = find_detail(error, error_details_pb2.RetryInfo)
    assert retry is not None and retry.retry_delay.ToMilliseconds() == 2500


async def test_unexpected_error_is_internal_and_logged_not_leaked(
    channel: grpc.aio.Channel, customer: tuple[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.kit.grpc_errors"):
        error = await call_fail(channel, "boom", customer)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_MESSAGE
    assert "hunter2" not in (error.debug_error_string() or "")
    [record] = [r for r in caplog.records if r.name == "services.kit.grpc_errors"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_missing_token_is_unauthenticated(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method(channel, "Echo")(wrappers_pb2.StringValue(value="hi"), timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "missing bearer token"


async def test_bad_token_is_unauthenticated_with_a_reason(channel: grpc.aio.Channel, issuer: LocalTokenIssuer) -> None:
    expired = issuer.mint(issued_at=int(time.time()) - 3600, ttl_s=60)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method(channel, "Echo")(
            wrappers_pb2.StringValue(value="hi"), metadata=issuer.metadata(expired), timeout=5
        )
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "token expired"
    info = find_detail(raised.value, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "UNAUTHENTICATED"


async def test_valid_token_reaches_the_handler_as_current_caller(
    channel: grpc.aio.Channel, customer: tuple[tuple[str, str]]
) -> None:
    response = await method(channel, "Echo")(wrappers_pb2.StringValue(value="hi"), metadata=customer, timeout=5)
    assert response.value == "hi from customer-1"


async def test_public_method_works_anonymously(channel: grpc.aio.Channel, customer: tuple[tuple[str, str]]) -> None:
    public = method(channel, "Public")
    assert (await public(empty_pb2.Empty(), timeout=5)).value == "anonymous"
    assert (await public(empty_pb2.Empty(), metadata=customer, timeout=5)).value == "customer-1"
    bad = (("authorization", "Bearer not-a-token"),)
    assert (await public(empty_pb2.Empty(), metadata=bad, timeout=5)).value == "anonymous"


async def test_roles_are_enforced_by_the_use_case(channel: grpc.aio.Channel, issuer: LocalTokenIssuer) -> None:
    manager_only = method(channel, "ManagerOnly")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await manager_only(empty_pb2.Empty(), metadata=issuer.metadata(issuer.mint("c-1", roles={"customer"})))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    manager = issuer.metadata(issuer.mint("m-1", roles={"manager"}))
    assert (await manager_only(empty_pb2.Empty(), metadata=manager, timeout=5)).value == "m-1"


async def test_server_streaming_through_the_interceptors(
    channel: grpc.aio.Channel, customer: tuple[tuple[str, str]]
) -> None:
    count = channel.unary_stream(
        f"/{SERVICE}/Count",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=wrappers_pb2.Int32Value.FromString,
    )
    assert [r.value async for r in count(wrappers_pb2.Int32Value(value=3), metadata=customer, timeout=5)] == [0, 1, 2]
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for response in count(wrappers_pb2.Int32Value(value=5), metadata=customer, timeout=5):
            received.append(response.value)
    assert received == [0, 1, 2, 3, 4]
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_endpoint_shows_red_series(
    host: ServiceHost, channel: grpc.aio.Channel, customer: tuple[tuple[str, str]]
) -> None:
    await method(channel, "Echo")(wrappers_pb2.StringValue(value="x"), metadata=customer, timeout=5)
    await call_fail(channel, "not_found", customer)
    with pytest.raises(grpc.aio.AioRpcError):
        await method(channel, "Echo")(wrappers_pb2.StringValue(value="x"), timeout=5)
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{host.metrics_port}/metrics", timeout=5)
    text = response.text
    base = {"grpc_service": SERVICE, "grpc_type": "unary"}
    for method_name, code in (("Echo", "OK"), ("Fail", "NOT_FOUND"), ("Echo", "UNAUTHENTICATED")):
        value = sample(text, "grpc_server_handled_total", grpc_method=method_name, grpc_code=code, **base)
        assert value is not None and value >= 1, (method_name, code)
    started = sample(text, "grpc_server_started_total", grpc_method="Echo", **base)
    timed = sample(text, "grpc_server_handling_seconds_count", grpc_method="Echo", **base)
    assert started is not None and timed is not None and timed == started


async def test_trace_context_flows_from_client_to_server(
    channel: grpc.aio.Channel, customer: tuple[tuple[str, str]]
) -> None:
    provider = telemetry.configure_tracing(KitSettings())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with trace.get_tracer("test").start_as_current_span("caller") as parent:
        await method(channel, "Echo")(wrappers_pb2.StringValue(value="t"), metadata=customer, timeout=5)
    trace_id = parent.get_span_context().trace_id
    kinds = {span.kind for span in exporter.get_finished_spans() if span.context.trace_id == trace_id}
    assert {trace.SpanKind.CLIENT, trace.SpanKind.SERVER} <= kinds
