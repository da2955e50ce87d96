"""Fixtures of the gateway tests: the gateway binary from .tools/bin (built by scripts/bootstrap)
as a real process on free ports, and real Cinema services behind it.

Every upstream address a test does not give points at a free port nobody listens on: a gateway
under test never reaches a `make up` stack that may run on the default ports.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from scripts.stack.paths import REPO, go_tool
from scripts.stack.process import ManagedProcess, free_port
from scripts.stack.services import Identity, ServiceProcess
from scripts.stack.stores import scratch_dir
from tests.support.servers import Server, start_nats

SERVICES = ("reservation", "payment", "movie", "review", "notification", "viewpage")
GATEWAY_SOURCES = REPO / "services" / "gateway"


def source_digest() -> str:
    """The digest scripts/bootstrap stamps into the binary (`gateway -version`): sha256sum of
    every source file but README.md and generate, sorted by path, hashed again."""
    files = sorted(
        (p for p in GATEWAY_SOURCES.rglob("*") if p.is_file() and p.name not in {"README.md", "generate"}),
        key=lambda p: str(p.relative_to(REPO)).encode(),
    )
    listing = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(REPO)}\n" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def gateway_binary() -> Path:
    """The built gateway; missing or older than its sources is a failure, never a skip."""
    binary = go_tool("gateway")
    built = subprocess.run([str(binary), "-version"], capture_output=True, text=True, check=True).stdout.strip()
    if built != source_digest():
        pytest.fail(f"{binary} ({built}) was built from other sources ({source_digest()}): run scripts/bootstrap")
    return binary


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - our own 127.0.0.1 URL
        return int(reply.status), reply.read()


@dataclass
class Gateway:
    """A running gateway process: its REST base URL, metrics URL and JSON log."""

    process: ManagedProcess
    port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.process.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"unparsed": raw})
        return lines

    def stop(self) -> int | None:
        return self.process.stop(timeout=15)


def start_gateway(binary: Path, root: Path, upstreams: Mapping[str, str], **env: str) -> Gateway:
    """Start a gateway; services missing from `upstreams` get an address where nothing listens."""
    port, metrics_port = free_port(), free_port()
    variables = {
        "GATEWAY_HTTP_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        **{f"GATEWAY_{name.upper()}_ADDRESS": upstreams.get(name) or f"127.0.0.1:{free_port()}" for name in SERVICES},
        **env,
    }
    log = root / f"gateway-{uuid.uuid4().hex[:6]}.log"
    process = ManagedProcess(
        "gateway", [str(binary)], log, lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, env=variables
    )
    process.start()
    process.wait_ready(30)
    return Gateway(process, port, metrics_port)


@pytest.fixture(scope="module")
def gateway_root() -> Iterator[Path]:
    yield scratch_dir("gateway")


@pytest.fixture(scope="module")
def identity(gateway_root: Path) -> Identity:
    return Identity(gateway_root)


@pytest.fixture(scope="module")
def gateway_nats() -> Iterator[Server]:
    """A NATS server of this module's own: its services' durable consumers start afresh."""
    server = start_nats()
    yield server
    server.cleanup()


def _service(name: str, root: Path, identity: Identity, settings: Mapping[str, str]) -> ServiceProcess:
    prefix = name.upper()
    port = free_port()
    env = {
        f"{prefix}_GRPC_PORT": str(port),
        f"{prefix}_METRICS_PORT": str(free_port()),
        f"{prefix}_DRAIN_S": "0.1",
        **identity.auth_env(prefix),
        **{f"{prefix}_{key}": value for key, value in settings.items()},
    }
    return ServiceProcess(name, port, env, root / f"{name}.log")


@dataclass
class Catalog:
    """The real services behind the gateway in the REST tests: movie, review and viewpage."""

    movie: ServiceProcess
    review: ServiceProcess
    viewpage: ServiceProcess
    nats: Server

    def upstreams(self) -> dict[str, str]:
        return {"movie": self.movie.address, "review": self.review.address, "viewpage": self.viewpage.address}


@pytest.fixture(scope="module")
def catalog(
    gateway_root: Path, identity: Identity, mongo_server: Server, redis_server: Server, gateway_nats: Server
) -> Iterator[Catalog]:
    prefix = str(mongo_server.extra["db_prefix"])
    tag = uuid.uuid4().hex[:8]
    movie = _service(
        "movie",
        gateway_root,
        identity,
        {"MONGO_URL": mongo_server.url, "MONGO_DATABASE": f"{prefix}gwmovie_{tag}", "NATS_URL": gateway_nats.url},
    )
    review = _service(
        "review",
        gateway_root,
        identity,
        {"MONGO_URL": mongo_server.url, "MONGO_DATABASE": f"{prefix}gwreview_{tag}", "NATS_URL": gateway_nats.url},
    )
    viewpage = _service(
        "viewpage",
        gateway_root,
        identity,
        {"REDIS_URL": redis_server.url, "KEY_PREFIX": f"gw{tag}", "NATS_URL": gateway_nats.url},
    )
    started: list[ServiceProcess] = []
    try:
        for service in (movie, review, viewpage):
            service.start()
            started.append(service)
        yield Catalog(movie, review, viewpage, gateway_nats)
    finally:
        for service in reversed(started):
            service.stop()
        client: MongoClient[dict[str, Any]] = MongoClient(mongo_server.url, serverSelectionTimeoutMS=5000)
        try:
            for database in (movie.env["MOVIE_MONGO_DATABASE"], review.env["REVIEW_MONGO_DATABASE"]):
                client.drop_database(database)
        finally:
            client.close()


@pytest.fixture(scope="module")
def gateway(gateway_binary: Path, gateway_root: Path, catalog: Catalog) -> Iterator[Gateway]:
    """The gateway in front of the catalog services; reservation, payment and notification are down."""
    gw = start_gateway(gateway_binary, gateway_root, catalog.upstreams())
    yield gw
    gw.stop()
