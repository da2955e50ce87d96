"""Deadlines through Envoy: the caller's grpc-timeout is honoured, the route's timeouts cap the rest.

A payment instance whose card processor takes 2 s stands behind an Envoy of its own (payment's
policy: timeout 800 ms, per try 400 ms). A gRPC client enforces its deadline by itself, so to see
that ENVOY honours the `grpc-timeout` header the request is also sent with curl (HTTP/2, gRPC
framing by hand), which waits as long as Envoy lets it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from scripts.stack.services import ServiceProcess, payment_process
from tests.integration.envoy.conftest import Edge, started, warm_up_payment
from tests.integration.envoy.proxy import EnvoyProxy
from tests.integration.envoy.test_egress import authorize_request

pytestmark = pytest.mark.integration

SLOW_MS = 2000
AUTHORIZE = "/cinema.payment.v1.PaymentService/AuthorizePayment"


@pytest.fixture(scope="module")
async def slow_payment(edge: Edge) -> AsyncIterator[ServiceProcess]:
    process = payment_process(
        edge.root / "payment-slow", edge.identity, edge.payment_db, edge.nats.url, processor_latency_ms=str(SLOW_MS)
    )
    await started(process)
    await warm_up_payment(process.address, edge.service_token())
    yield process
    await asyncio.to_thread(process.stop)


@pytest.fixture(scope="module")
async def slow_edge(edge: Edge, slow_payment: ServiceProcess) -> AsyncIterator[EnvoyProxy]:
    proxy = edge.new_envoy("envoy-slow", upstreams={"payment": [("127.0.0.1", slow_payment.port)]})
    await proxy.start()
    await proxy.wait_healthy("payment", {slow_payment.address})
    yield proxy
    await proxy.stop()


async def curl_grpc(address: str, token: str, body: bytes, folder: Path, grpc_timeout: str | None) -> tuple[float, str]:
    """One unary gRPC call by curl, no client-side deadline; returns (seconds, grpc-status)."""
    curl = shutil.which("curl")
    assert curl, "curl is needed to send a grpc-timeout header without a client-side deadline"
    request = folder / f"{uuid.uuid4().hex}.bin"
    request.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
    headers = folder / f"{uuid.uuid4().hex}.headers"
    argv = [
        curl, "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-D", str(headers), "--max-time", "10",
        "-X", "POST", "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", f"authorization: Bearer {token}", "--data-binary", f"@{request}",
    ]  # fmt: skip
    if grpc_timeout is not None:
        argv += ["-H", f"grpc-timeout: {grpc_timeout}"]
    started_at = time.monotonic()
    process = await asyncio.create_subprocess_exec(*argv, f"http://{address}{AUTHORIZE}")
    assert await process.wait() == 0
    elapsed = time.monotonic() - started_at
    status = ""
    for line in headers.read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "grpc-status":
            status = value.strip()
    return elapsed, status


async def test_envoy_honours_the_callers_grpc_timeout(edge: Edge, slow_edge: EnvoyProxy, tmp_path: Path) -> None:
    token = edge.service_token()[0][1].removeprefix("Bearer ")
    body = authorize_request().SerializeToString()
    # a 100 ms deadline in the header: Envoy ends the call then (DEADLINE_EXCEEDED), before the
    # service's own deadline handling answers and long before its route's 400/800 ms
    elapsed, status = await curl_grpc(slow_edge.egress("payment"), token, body, tmp_path, "100m")
    assert 0.09 <= elapsed < 0.3, elapsed
    assert status == "4", status
    line = await slow_edge.log_line(lambda line: line["listener"] == "egress_payment")
    assert line["details"] == "max_duration_timeout" and line["duration_ms"] < 200, line
    # without a deadline the route's policy ends it: a try of 400 ms, retried once (payment's
    # retries include `reset`, which covers a per-try timeout), within its 800 ms timeout
    elapsed, status = await curl_grpc(slow_edge.egress("payment"), token, body, tmp_path, None)
    assert 0.38 <= elapsed < 1.2, elapsed
    assert status in ("4", "14"), status
    # a deadline longer than the route's timeout does not lengthen it (30 s asked)
    elapsed, _ = await curl_grpc(slow_edge.egress("payment"), token, body, tmp_path, "30S")
    assert elapsed < 1.2, elapsed


async def test_a_grpc_client_deadline_shorter_than_the_route_timeout_holds(edge: Edge, slow_edge: EnvoyProxy) -> None:
    from cinema.payment.v1 import payment_pb2_grpc

    async with grpc.aio.insecure_channel(slow_edge.egress("payment")) as channel:
        stub = payment_pb2_grpc.PaymentServiceStub(channel)
        started_at = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.AuthorizePayment(authorize_request(), metadata=edge.service_token(), timeout=0.15)
        elapsed = time.monotonic() - started_at
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 0.4, elapsed
