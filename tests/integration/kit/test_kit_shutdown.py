"""A service process drains on SIGTERM: NOT_SERVING first, in-flight RPCs finish, exit code 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.testing_tokens import LocalTokenIssuer
from tests.integration.kit.kit_echo_service import SERVICE, method

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).with_name("kit_echo_service.py")


class ServiceProcess:
    """The echo service in its own process, its JSON log lines collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.started = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"message": raw.decode(errors="replace").rstrip()}
            self.lines.append(line)
            if line.get("message") == "service started":
                self.started.set()

    @property
    def port(self) -> int:
        return int(next(line["port"] for line in self.lines if line.get("message") == "service started"))

    def messages(self) -> list[str]:
        return [str(line.get("message")) for line in self.lines]


async def test_sigterm_drains_then_finishes_in_flight_rpcs_and_exits_zero(tmp_path: Path) -> None:
    issuer = LocalTokenIssuer()
    env = os.environ | {
        "CINEMA_SERVICE_NAME": "kit-echo",
        "CINEMA_GRPC_PORT": "0",
        "CINEMA_METRICS_PORT": "0",
        "CINEMA_JWKS_SOURCE": str(issuer.write_jwks(tmp_path / "jwks.json")),
        "CINEMA_JWT_ISSUER": issuer.issuer,
        "CINEMA_JWT_AUDIENCE": issuer.audience,
        "CINEMA_DRAIN_S": "1.5",
        "CINEMA_SHUTDOWN_GRACE_S": "10",
        "PYTHONPATH": str(REPO),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
    )
    service = ServiceProcess(process)
    try:
        await asyncio.wait_for(service.started.wait(), timeout=30)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=SERVICE)
            assert (await health.Check(request, timeout=5)).status == health_pb2.HealthCheckResponse.SERVING

            slow = asyncio.ensure_future(
                method(channel, "Slow")(
                    wrappers_pb2.DoubleValue(value=3.0), metadata=issuer.metadata(issuer.mint()), timeout=30
                )
            )
            await asyncio.sleep(0.5)  # the slow RPC is in flight
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)

            # During the drain period the server still answers, and says it is going away.
            seen_not_serving = False
            while not seen_not_serving and time.monotonic() - signalled_at < 1.2:
                service_status = (await health.Check(request, timeout=5)).status
                overall = (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status
                seen_not_serving = service_status == overall == health_pb2.HealthCheckResponse.NOT_SERVING
                await asyncio.sleep(0.05)
            assert seen_not_serving, "health did not turn NOT_SERVING during the drain period"
            assert not slow.done()  # still in flight when the server starts stopping

            response = await slow
            assert response.value == "done"

        exit_code = await asyncio.wait_for(process.wait(), timeout=30)
        assert exit_code == 0
        await asyncio.wait_for(service.reader, timeout=5)
        messages = service.messages()
        assert messages.index("service stopping") < messages.index("service stopped")
        assert all(line.get("service") == "kit-echo" for line in service.lines if "timestamp" in line)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        service.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service.reader
