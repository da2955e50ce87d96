"""Admission control on a real ServiceHost: past its limit a service refuses at once, with a hint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.admission import OVERLOADED
from services.kit.grpc_errors import find_detail
from services.kit.server import ServiceHost
from services.kit.settings import KitSettings
from services.kit.testing_tokens import LocalTokenIssuer
from tests.integration.kit.kit_echo_service import PUBLIC_METHODS, method, register

pytestmark = pytest.mark.integration

LIMIT = 4
HOLD_S = 1.5


@pytest.fixture(scope="module")
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer()


@pytest.fixture(scope="module")
async def host(issuer: LocalTokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceHost]:
    jwks: Path = issuer.write_jwks(tmp_path_factory.mktemp("jwks") / "jwks.json")
    settings = KitSettings(
        service_name="kit-admission-test",
        grpc_port=0,
        metrics_port=0,
        jwks_source=str(jwks),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        drain_s=0,
        shutdown_grace_s=1,
        max_in_flight=LIMIT,
        admission_queue_ms=20,
        admission_burst_queue_ms=500,
        admission_retry_after_ms=300,
        admission_target_ms=60_000,  # the slow calls here are meant to be slow: no adaptive cut
    )
    async with ServiceHost(settings, register, public_methods=PUBLIC_METHODS) as running:
        yield running


async def _timed(call: object, seconds: float, metadata: object) -> tuple[float, grpc.StatusCode, Any]:
    started = time.perf_counter()
    try:
        await call(wrappers_pb2.DoubleValue(value=seconds), metadata=metadata, timeout=10)  # type: ignore[operator]
    except grpc.aio.AioRpcError as err:
        return time.perf_counter() - started, err.code(), err
    return time.perf_counter() - started, grpc.StatusCode.OK, None


async def test_a_burst_waits_for_slots_and_is_served(host: ServiceHost, issuer: LocalTokenIssuer) -> None:
    metadata = issuer.metadata(issuer.mint("customer-1", roles={"customer"}))
    async with grpc.aio.insecure_channel(host.address) as channel:
        slow = method(channel, "Slow")
        results = await asyncio.gather(*(_timed(slow, 0.2, metadata) for _ in range(LIMIT * 2)))
    assert [code for _, code, _ in results] == [grpc.StatusCode.OK] * (LIMIT * 2), results


async def test_past_the_limit_calls_are_refused_fast_with_a_retry_hint(
    host: ServiceHost, issuer: LocalTokenIssuer
) -> None:
    metadata = issuer.metadata(issuer.mint("customer-1", roles={"customer"}))
    async with grpc.aio.insecure_channel(host.address) as channel:
        slow = method(channel, "Slow")
        # The service full and a queue behind it for longer than a burst lasts: an overload.
        held = [asyncio.ensure_future(_timed(slow, HOLD_S, metadata)) for _ in range(LIMIT * 2)]
        await asyncio.sleep(0.3)
        # While the service is full, probes still get the truth.
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        late = await asyncio.gather(*(_timed(slow, HOLD_S, metadata) for _ in range(LIMIT)))
        early = await asyncio.gather(*held)

    assert [code for _, code, _ in early].count(grpc.StatusCode.OK) == LIMIT, early
    for elapsed, code, err in late:
        assert code is grpc.StatusCode.UNAVAILABLE, late
        assert elapsed < 0.3, f"a refusal took {elapsed:.2f} s: it waited for a slot instead of failing fast"
        retry = find_detail(err, error_details_pb2.RetryInfo)
        assert retry is not None and retry.retry_delay.ToMilliseconds() == 300
        info = find_detail(err, error_details_pb2.ErrorInfo)
        assert info is not None and info.reason == OVERLOADED
        assert "capacity" in (err.details() or "")


async def test_refusals_are_counted_and_the_limit_is_exported(host: ServiceHost) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{host.metrics_port}/metrics")).text
    refused = [
        line for line in text.splitlines() if line.startswith("cinema_admission_refused_total{") and "Slow" in line
    ]
    assert refused and float(refused[0].rsplit(" ", 1)[1]) >= LIMIT
    assert any(line.startswith("cinema_admission_limit ") for line in text.splitlines())
