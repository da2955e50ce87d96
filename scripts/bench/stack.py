"""The system under test: a whole local stack started in a scratch folder, or the running one.

A scratch stack is the real `python -m scripts.stack supervise` (what `make up` detaches) run as
a child of the benchmark, with `CINEMA_DATA_DIR` pointing at a temporary folder and every
`CINEMA_*_PORT` the runtime reads set to a free port, so it never touches a developer's own
`make up`. The child dies with the benchmark (PR_SET_PDEATHSIG, set by ManagedProcess), and the
supervisor stops its components gracefully when asked to stop.

The port variables are the runtime's own list (components.scratch_env), so components added
later get free ports as well. A scratch stack's addresses are read back from the environment
chosen here, not from scripts.stack's module constants, which were fixed when it was imported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio

from scripts.stack.process import ManagedProcess

STACK_SOURCES = Path(__file__).resolve().parents[1] / "stack"
SERVICES = ("reservation", "payment", "movie", "review", "notification", "viewpage")
EXTERNAL_STORE_VARS = ("DATABASE_URL", "MONGO_URL", "REDIS_URL", "NATS_URL")
INGRESS_ENV = "CINEMA_BENCH_INGRESS"  # host:port of the Envoy ingress for --target ingress
DEFAULT_INGRESS = "127.0.0.1:18080"  # notes/ports.md
READY_TIMEOUT_S = 240.0


def make_scratch_dir() -> Path:
    """A temporary data folder the PostgreSQL system user can traverse (as stores.scratch_dir)."""
    path = Path(tempfile.mkdtemp(prefix="cinema-bench-"))
    path.chmod(0o711)
    return path


def prepare_environment(scratch: Path | None) -> dict[str, str]:
    """Settle this process's environment (and so the supervisor's) before scripts.stack reads it.

    With a scratch folder: data there, every port free, no external stores. Without: unchanged
    (the running stack's defaults, or the developer's own overrides)."""
    if scratch is None:
        return {}
    from scripts.stack.components import scratch_env

    chosen = scratch_env(scratch)
    # The ingress's token bucket (200, +100/s for everybody) would cap a benchmark through the
    # ingress at 100 calls a second: the scratch stack measures capacity, so it is raised.
    chosen.setdefault("CINEMA_INGRESS_RATE_LIMIT_PER_S", os.environ.get("CINEMA_INGRESS_RATE_LIMIT_PER_S", "100000"))
    for name in EXTERNAL_STORE_VARS:
        os.environ.pop(name, None)
    os.environ.update(chosen)
    return chosen


@dataclass
class Stack:
    """Where the stack under test answers and which processes it is made of."""

    data_dir: Path
    grpc_ports: dict[str, list[int]]  # service -> the gRPC port of each of its instances
    metrics_ports: dict[str, list[int]]
    ingress: str
    scratch: bool
    supervisor: ManagedProcess | None = None
    store_urls: dict[str, str] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.data_dir / "run" / "state.json"

    def address(self, service: str, target: str) -> str:
        """Where a client reaches `service`: the ingress, or (direct) every instance of it, as one
        gRPC target that `channel()` balances round-robin."""
        if target in ("ingress", "rest"):
            return self.ingress
        ports = self.grpc_ports[service]
        if len(ports) == 1:
            return f"127.0.0.1:{ports[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)

    def instance_of(self, component: str) -> str | None:
        """The service a component of the stack is an instance of (`reservation-2` -> reservation)."""
        service = component.rsplit("-", 1)[0] if component.rsplit("-", 1)[-1].isdigit() else component
        return service if service in self.grpc_ports else None

    def read_state(self) -> list[dict[str, object]]:
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        components = state.get("components", []) if isinstance(state, dict) else []
        return [c for c in components if isinstance(c, dict)]

    def pids(self) -> dict[str, int]:
        """Component name -> pid, as the supervisor last recorded them (re-read: restarts change pids)."""
        pids: dict[str, int] = {}
        for c in self.read_state():
            pid = c.get("pid")
            if isinstance(pid, int):
                pids[str(c["name"])] = pid
        return pids

    def stop(self) -> None:
        if self.supervisor is not None:
            # The supervisor stops the services (each drains), then the stores in reverse order.
            self.supervisor.stop(timeout=90)
            self.supervisor = None


def channel(address: str) -> grpc.aio.Channel:
    """A channel to `address`; a target of several instances (`ipv4:a,b`) is balanced round-robin,
    as the mesh balances them."""
    return grpc.aio.insecure_channel(address, options=[("grpc.lb_policy_name", "round_robin")])


def _instance_ports(service: str, metrics: bool) -> list[int]:
    """The ports of a service's instances: the environment's (a scratch stack's, or the developer's
    overrides), else the runtime's defaults."""
    from scripts.stack import components

    kind = "METRICS_PORT" if metrics else "PORT"
    ports = []
    for k, defaults in enumerate(components.INSTANCE_PORTS[service][: components.instances(service)], start=1):
        var = f"CINEMA_{service.upper()}_{kind}" + (f"_{k}" if k > 1 else "")
        ports.append(int(os.environ.get(var) or defaults[1 if metrics else 0]))
    return ports


def describe(scratch: Path | None) -> Stack:
    """The stack's addresses: a scratch stack's from the environment prepare_environment chose, the
    running stack's from the runtime's own configuration (its defaults or the developer's overrides)."""
    grpc_ports = {s: _instance_ports(s, metrics=False) for s in SERVICES}
    metrics_ports = {s: _instance_ports(s, metrics=True) for s in SERVICES}
    if scratch is not None:
        ingress_port = os.environ.get("CINEMA_INGRESS_PORT")
        ingress = os.environ.get(INGRESS_ENV) or (f"127.0.0.1:{ingress_port}" if ingress_port else DEFAULT_INGRESS)
        return Stack(scratch, grpc_ports, metrics_ports, ingress, scratch=True)
    from scripts.stack import components
    from scripts.stack.paths import DATA

    running_ingress = f"127.0.0.1:{getattr(components, 'INGRESS_PORT', 18080)}"
    return Stack(DATA, grpc_ports, metrics_ports, os.environ.get(INGRESS_ENV) or running_ingress, scratch=False)


def start_scratch(stack: Stack, log_dir: Path) -> None:
    """Run the supervisor in the foreground as our child and wait until every component is ready,
    printing each as it comes up."""
    argv = [sys.executable, "-m", "scripts.stack", "supervise"]
    repo = STACK_SOURCES.parents[1]
    stack.supervisor = ManagedProcess("supervisor", argv, log_dir / "supervisor.log", lambda: False, cwd=repo)
    stack.supervisor.start()
    shown: set[str] = set()
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if not stack.supervisor.running():
            raise RuntimeError(f"the supervisor exited:\n{stack.supervisor.log_tail()}")
        components = stack.read_state()
        for c in components:
            if c.get("phase") == "ready" and c["name"] not in shown:
                shown.add(str(c["name"]))
                print(f"  {c['name']:<14} ready after {time.monotonic() - started:5.1f} s", flush=True)
        if components and all(c.get("phase") in ("ready", "external") for c in components):
            stack.store_urls = {str(c["name"]): str(c["url"]) for c in components}
            return
        time.sleep(0.3)
    raise RuntimeError(f"the stack was not ready within {READY_TIMEOUT_S:.0f} s; logs in {stack.data_dir / 'logs'}")


def use_running(stack: Stack) -> None:
    """Check that a `make up` stack runs and learn its store URLs."""
    components = stack.read_state()
    not_ready = [c["name"] for c in components if c.get("phase") not in ("ready", "external")]
    if not components or not_ready:
        raise RuntimeError(f"--use-running: no ready stack in {stack.data_dir} (not ready: {not_ready or 'all'})")
    stack.store_urls = {str(c["name"]): str(c["url"]) for c in components}


def keep_logs(stack: Stack, report_dir: Path) -> None:
    """Copy the scratch stack's logs next to the report, for a look after the folder is gone."""
    logs = stack.data_dir / "logs"
    if logs.is_dir():
        shutil.copytree(logs, report_dir / "stack-logs", dirs_exist_ok=True)


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
