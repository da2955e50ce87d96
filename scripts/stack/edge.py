"""The edge of the local system: identity (OAuth2 tokens), Envoy (ingress and the mesh between
services) and the REST gateway, as supervised components of `make up`.

Envoy's configuration is rendered from the Helm chart's values (mesh/envoy.py), so the local
mesh applies the same timeouts, retries and breakers as Istio does in a cluster.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.paths import DATA, REPO, go_tool
from scripts.stack.process import ManagedProcess

DEMO_CUSTOMER = ("demo-customer", "popcorn-customer")
DEMO_MANAGER = ("demo-manager", "popcorn-manager")


def http_ok(url: str, timeout: float = 1.5) -> bool:
    """A GET that answers 2xx (a readiness probe for the HTTP parts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (local URL we built)
            return 200 <= int(reply.status) < 300
    except (OSError, urllib.error.URLError):
        return False


def wait_for_mesh(admin_url: str, timeout: float = 60) -> None:
    """Until every Envoy cluster has a healthy host. A service that just reported SERVING is
    routed to after its first passing active health check (up to a second later); until then the
    ingress answers "no healthy upstream", so whoever calls right after start-up waits here."""
    import time

    deadline = time.monotonic() + timeout
    waiting: list[str] = []
    while True:
        try:
            with urllib.request.urlopen(f"{admin_url}/clusters", timeout=2) as reply:  # noqa: S310 (local)
                text = reply.read().decode()
            healthy: dict[str, bool] = {}
            for line in text.splitlines():
                parts = line.split("::")  # cluster::host:port::health_flags::healthy|/failed_active_hc...
                if len(parts) == 4 and parts[2] == "health_flags":
                    healthy[parts[0]] = healthy.get(parts[0], False) or parts[3] == "healthy"
            waiting = sorted(name for name, ok in healthy.items() if not ok)
            if healthy and not waiting:
                return
        except OSError as error:
            waiting = [str(error)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"Envoy has no healthy host yet for: {', '.join(waiting)}")
        time.sleep(0.2)


def password_token(token_url: str, username: str, password: str, timeout: float = 10) -> str:
    """An access token for a person, by the OAuth2 password grant (what a client app does)."""
    body = urllib.parse.urlencode({"grant_type": "password", "username": username, "password": password}).encode()
    request = urllib.request.Request(  # noqa: S310 (a local URL we built)
        token_url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        return str(json.loads(reply.read())["access_token"])


def token_subject(token: str) -> str:
    """The `sub` of our own access token (read, not verified: the services verify it)."""
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


@dataclass(frozen=True)
class IdentityEndpoints:
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth2/token"

    def auth_env(self, prefix: str) -> dict[str, str]:
        """What a service needs to verify identity's tokens: an issuer and a JWKS URL, nothing else."""
        return {
            f"{prefix}_JWKS_SOURCE": self.jwks_url,
            f"{prefix}_JWT_ISSUER": self.issuer,
            f"{prefix}_JWT_AUDIENCE": "cinema",
        }


def key_encryption_key(folder: Path) -> str:
    """The development key that encrypts identity's private signing keys at rest (kept in .data)."""
    path = folder / "key-encryption-key"
    if not path.exists():
        path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode())
        path.chmod(0o600)
    return path.read_text().strip()


def identity_process(
    endpoints: IdentityEndpoints,
    database_url: str,
    log_path: Path,
    folder: Path,
    extra_env: dict[str, str],
    port: int | None = None,
    nice: int = 0,
) -> ManagedProcess:
    """Identity serving on `port` (default: the endpoints' own), booting at nice `nice`; every
    instance signs as the issuer `endpoints` names."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    port = endpoints.port if port is None else port
    env = {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_HTTP_PORT": str(port),
        "IDENTITY_PUBLIC_URL": endpoints.base_url,
        "IDENTITY_KEY_ENCRYPTION_KEY": key_encryption_key(folder),
        "IDENTITY_LOG_LEVEL": os.environ.get("CINEMA_LOG_LEVEL", "INFO"),
        **extra_env,
    }
    return ManagedProcess(
        "identity",
        [sys.executable, "-m", "services.identity", "serve"],
        log_path,
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        env=env,
        cwd=REPO,
        boot_nice=nice,
    )


def seed_identity(database_url: str, secret_file: Path, folder: Path) -> None:
    """Demo accounts and the `reservation` client (its secret written to `secret_file`); idempotent."""
    import subprocess

    env = {
        **os.environ,
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_KEY_ENCRYPTION_KEY": key_encryption_key(folder),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.identity", "seed-demo", "--client-secret-file", str(secret_file)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"identity seed-demo failed: {done.stderr[-2000:]}")


@dataclass(frozen=True)
class EnvoyPorts:
    ingress: int
    admin: int
    egress: dict[str, int]  # service -> local listener that applies the service's traffic policy


def render_envoy(
    path: Path,
    ports: EnvoyPorts,
    upstreams: dict[str, list[int]],
    identity: IdentityEndpoints,
    otlp: str | None = None,
    trace_sample_ratio: float = 1.0,
    rate_limit_per_s: int | None = None,
) -> Path:
    """Write the Envoy bootstrap for this machine from helm/cinema/values.yaml."""
    from mesh import envoy, policy

    mesh = policy.load()
    options = envoy.LocalOptions(
        ingress_port=ports.ingress,
        admin_port=ports.admin,
        egress_ports=dict(ports.egress),
        upstreams={name: [("127.0.0.1", port) for port in ports_] for name, ports_ in upstreams.items()},
        jwks=envoy.JwksUrl(identity.jwks_url),
        issuer=identity.issuer,
        audience="cinema",
        otlp_endpoint=otlp,
        trace_sample_percent=trace_sample_ratio * 100,
        # Every bucket (each client's and the total) a second's worth deep: a benchmark measures the
        # stack's capacity from one client, not the limit.
        rate_limit=None if rate_limit_per_s is None else policy.EdgeRateLimit.uniform(rate_limit_per_s),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(envoy.dump(envoy.render(mesh, options)))
    return path


def envoy_process(config: Path, admin_port: int, log_path: Path) -> ManagedProcess:
    from mesh import envoy

    return ManagedProcess(
        "envoy", envoy.command(config), log_path, lambda: http_ok(f"http://127.0.0.1:{admin_port}/ready"), cwd=REPO
    )


def gateway_process(
    port: int, metrics_port: int, upstreams: dict[str, int], log_path: Path, extra_env: dict[str, str] | None = None
) -> ManagedProcess:
    env = {
        "GATEWAY_HTTP_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_LOG_LEVEL": os.environ.get("CINEMA_LOG_LEVEL", "INFO"),
        **{f"GATEWAY_{name.upper()}_ADDRESS": f"127.0.0.1:{p}" for name, p in upstreams.items()},
        **(extra_env or {}),
    }
    return ManagedProcess(
        "gateway", [str(go_tool("gateway"))], log_path, lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), env=env
    )


__all__ = [
    "DATA",
    "DEMO_CUSTOMER",
    "DEMO_MANAGER",
    "EnvoyPorts",
    "IdentityEndpoints",
    "envoy_process",
    "gateway_process",
    "http_ok",
    "identity_process",
    "key_encryption_key",
    "password_token",
    "render_envoy",
    "seed_identity",
    "token_subject",
    "wait_for_mesh",
]
