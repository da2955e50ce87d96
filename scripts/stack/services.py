"""Cinema services as real processes (`python -m services.<name>` configured by environment
variables): how the system tests and the benchmarks start, kill and restart them, as a
deployment would."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.stack.paths import REPO
from scripts.stack.process import ManagedProcess, free_port
from services.kit.testing_tokens import LocalTokenIssuer


def grpc_serving(port: int, service: str = "") -> bool:
    """One gRPC health check against 127.0.0.1:port (what a readiness probe does)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class ServiceProcess:
    """One service process; `port` is its gRPC port, `env` its whole configuration."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        self.process = ManagedProcess(
            self.name,
            [sys.executable, "-m", f"services.{self.name}"],
            self.log_path,
            lambda: grpc_serving(self.port),
            env=self.env,
            cwd=REPO,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60) -> None:
        self.process.start()
        self.process.wait_ready(ready_timeout)

    def stop(self) -> int | None:
        return self.process.stop(timeout=30)

    def kill(self) -> None:
        self.process.kill()
        self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Identity:
    """A token issuer for the system under test, and the files services read it from."""

    root: Path
    issuer: LocalTokenIssuer = field(default_factory=LocalTokenIssuer)

    def __post_init__(self) -> None:
        self.jwks_path = self.issuer.write_jwks(self.root / "jwks.json")

    def auth_env(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}_JWKS_SOURCE": str(self.jwks_path),
            f"{prefix}_JWT_ISSUER": self.issuer.issuer,
            f"{prefix}_JWT_AUDIENCE": self.issuer.audience,
        }

    def customer(self, subject: str) -> tuple[tuple[str, str], ...]:
        token = self.issuer.mint(subject, roles={"customer"}, extra_claims={"email": f"{subject}@example.test"})
        return tuple(self.issuer.metadata(token))

    def service_token_file(self, service: str) -> Path:
        path = self.root / f"{service}.token"
        path.write_text(self.issuer.mint(service, roles={"service"}, ttl_s=24 * 3600))
        return path


def payment_process(root: Path, identity: Identity, database_url: str, nats_url: str, **extra: str) -> ServiceProcess:
    port = free_port()
    env = {
        "PAYMENT_DATABASE_URL": database_url,
        "PAYMENT_NATS_URL": nats_url,
        "PAYMENT_GRPC_PORT": str(port),
        "PAYMENT_METRICS_PORT": str(free_port()),
        "PAYMENT_DRAIN_S": "0.2",
        **identity.auth_env("PAYMENT"),
        **{f"PAYMENT_{k.upper()}": v for k, v in extra.items()},
    }
    return ServiceProcess("payment", port, env, root / "payment.log")


def reservation_process(
    root: Path, identity: Identity, database_url: str, nats_url: str, payment_address: str, **extra: str
) -> ServiceProcess:
    port = free_port()
    env = {
        "RESERVATION_DATABASE_URL": database_url,
        "RESERVATION_NATS_URL": nats_url,
        "RESERVATION_GRPC_PORT": str(port),
        "RESERVATION_METRICS_PORT": str(free_port()),
        "RESERVATION_PAYMENT_ADDRESS": payment_address,
        "RESERVATION_PAYMENT_TOKEN_FILE": str(identity.service_token_file("reservation")),
        "RESERVATION_DRAIN_S": "0.2",
        **identity.auth_env("RESERVATION"),
        **{f"RESERVATION_{k.upper()}": v for k, v in extra.items()},
    }
    return ServiceProcess("reservation", port, env, root / "reservation.log")


__all__ = ["Identity", "ServiceProcess", "grpc_serving", "os", "payment_process", "reservation_process"]
