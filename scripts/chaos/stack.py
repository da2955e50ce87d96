"""The system under chaos: a whole scratch stack (every port free, data in a temporary folder,
every service with its instances) run by scripts.chaos.supervise, and the handles the scenarios
need: instances, pids, signals, holds, what Envoy sees, and where each store answers.

`prepare_environment` must run before anything imports scripts.stack.components: the runtime
reads its ports from the environment once, at import.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from scripts.stack import process
from scripts.stack.process import ManagedProcess

SERVICES = ("reservation", "payment", "movie", "review", "notification", "viewpage")
EXTERNAL_STORE_VARS = ("DATABASE_URL", "MONGO_URL", "REDIS_URL", "NATS_URL")
READY_TIMEOUT_S = 240.0
REPO = Path(__file__).resolve().parents[2]


def prepare_environment(data: Path, drain_s: float, instances: int) -> None:
    """Scratch ports for everything, the instances of each service, and the drain the services use.

    The drain must outlast Envoy's detection of NOT_SERVING (health check every 1 s, unhealthy
    after 2 failures): with less, a request can still be routed to an instance that stopped."""
    from scripts.stack.components import scratch_env  # safe: only PORT_VARIABLES is read

    for name in EXTERNAL_STORE_VARS:
        os.environ.pop(name, None)
    os.environ.update(scratch_env(data))
    os.environ["CINEMA_INSTANCES"] = str(instances)
    # The load is a crowd of customers behind one client: the ingress's per-client token buckets
    # (writes 20, +10/s) would refuse most of it with RESOURCE_EXHAUSTED (as for the benchmark)
    os.environ["CINEMA_INGRESS_RATE_LIMIT_PER_S"] = "100000"
    # the kit reads CINEMA_DRAIN_S in its docs' words, each service with its own prefix
    for service in SERVICES:
        os.environ[f"{service.upper()}_DRAIN_S"] = str(drain_s)
    os.environ.setdefault("CINEMA_LOG_LEVEL", "INFO")


def _port(var: str) -> int:
    return int(os.environ[var])


@dataclass
class ChaosStack:
    data: Path
    supervisor: ManagedProcess | None = None
    urls: dict[str, str] = field(default_factory=dict)
    fault_at: float | None = None  # when the scenario's first signal was sent (monotonic)

    # -- where things are ---------------------------------------------------------------------

    @property
    def ingress(self) -> str:
        return f"127.0.0.1:{_port('CINEMA_INGRESS_PORT')}"

    @property
    def envoy_admin(self) -> str:
        return f"http://127.0.0.1:{_port('CINEMA_ENVOY_ADMIN_PORT')}"

    @property
    def nats_monitor(self) -> str:
        return f"http://127.0.0.1:{_port('CINEMA_NATS_MONITOR_PORT')}"

    @property
    def mail_dir(self) -> Path:
        return self.data / "mail"

    def database_url(self, database: str) -> str:
        from urllib.parse import urlparse

        return urlparse(self.urls["postgres"])._replace(path=f"/{database}").geturl()

    def instances(self, service: str) -> list[str]:
        """The component names of a service's instances (`payment`, `payment-2`), as running."""
        names = [n for n in self.states() if n == service or n.startswith(f"{service}-")]
        return sorted(names, key=lambda n: (len(n), n))

    def port(self, component: str) -> int:
        """The gRPC port of one instance (from its URL in the supervisor's state)."""
        return int(str(self.states()[component]["url"]).rsplit(":", 1)[1])

    # -- the supervisor's view ----------------------------------------------------------------

    def states(self) -> dict[str, dict[str, object]]:
        try:
            state = json.loads((self.data / "run" / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {str(c["name"]): c for c in state.get("components", [])}

    def pid(self, name: str) -> int | None:
        pid = self.states().get(name, {}).get("pid")
        return pid if isinstance(pid, int) else None

    def ready(self, name: str) -> bool:
        return self.states().get(name, {}).get("phase") == "ready"

    def all_ready(self) -> bool:
        states = self.states()
        return bool(states) and all(c.get("phase") in ("ready", "external") for c in states.values())

    def start(self, log_dir: Path) -> None:
        argv = [sys.executable, "-m", "scripts.chaos.supervise"]
        self.supervisor = ManagedProcess("supervisor", argv, log_dir / "supervisor.log", lambda: False, cwd=REPO)
        self.supervisor.start()
        started = time.monotonic()
        shown: set[str] = set()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if not self.supervisor.running():
                raise RuntimeError(f"the supervisor exited:\n{self.supervisor.log_tail()}")
            states = self.states()
            for name, c in states.items():
                if c.get("phase") == "ready" and name not in shown:
                    shown.add(name)
                    print(f"  {name:<14} ready after {time.monotonic() - started:5.1f} s", flush=True)
            if self.all_ready():
                self.urls = {name: str(c["url"]) for name, c in states.items()}
                return
            time.sleep(0.3)
        raise RuntimeError(f"the stack was not ready within {READY_TIMEOUT_S:.0f} s; logs in {self.data / 'logs'}")

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop(timeout=120)
            self.supervisor = None

    # -- faults ---------------------------------------------------------------------------------

    def signal(self, name: str, sig: signal.Signals) -> int:
        pid = self.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} has no pid (state: {self.states().get(name)})")
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            # the state file lags a restart by one supervisor round: signal the new process
            pid = self.wait_new_pid(name, pid, timeout=10)
            os.kill(pid, sig)
        if self.fault_at is None:
            self.fault_at = time.monotonic()
        return pid

    def hold(self, name: str) -> None:
        """Keep `name` down once it exits (the supervisor does not restart a held component)."""
        folder = self.data / "run" / "hold"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()

    def release(self, name: str) -> None:
        (self.data / "run" / "hold" / name).unlink(missing_ok=True)

    def wait_exited(self, pid: int, timeout: float = 60) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return time.monotonic() - started
            if _zombie(pid):
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"pid {pid} did not exit within {timeout:.0f} s")

    def wait_ready(self, name: str, old_pid: int | None = None, timeout: float = 120) -> float:
        """Seconds until `name` is ready again (in a new process when `old_pid` is given)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            c = self.states().get(name, {})
            if c.get("phase") == "ready" and (old_pid is None or c.get("pid") != old_pid):
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not ready again within {timeout:.0f} s: {self.states().get(name)}")

    def wait_new_pid(self, name: str, old_pid: int, timeout: float = 60) -> int:
        """The pid of the process the supervisor starts for `name` after `old_pid` (polled often,
        so that it can be reniced early in its boot)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            pid = self.pid(name)
            if pid is not None and pid != old_pid:
                return pid
            time.sleep(0.02)
        raise RuntimeError(f"the supervisor did not start {name} again within {timeout:.0f} s")

    # -- what Envoy sees -------------------------------------------------------------------------

    def envoy_healthy_hosts(self, cluster: str) -> dict[int, bool]:
        """Port -> healthy, for the instances of a cluster as Envoy sees them now."""
        with urllib.request.urlopen(f"{self.envoy_admin}/clusters?format=json", timeout=5) as reply:  # noqa: S310
            data = json.loads(reply.read())
        hosts: dict[int, bool] = {}
        for status in data.get("cluster_statuses", []):
            if status.get("name") != cluster:
                continue
            for host in status.get("host_statuses", []):
                port = int(host["address"]["socket_address"]["port_value"])
                health = host.get("health_status", {})
                bad = any(k != "eds_health_status" and v for k, v in health.items() if isinstance(v, bool))
                eds = health.get("eds_health_status", "HEALTHY")
                hosts[port] = not bad and eds == "HEALTHY"
        return hosts

    def wait_envoy(self, cluster: str, port: int, healthy: bool, timeout: float = 30) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.envoy_healthy_hosts(cluster).get(port) is healthy:
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"Envoy never saw {cluster} at port {port} {'healthy' if healthy else 'unhealthy'}")


def renice(pid: int | None, value: int) -> None:
    """Set a process's nice value, every thread of it (a booting instance yields the CPU to the serving ones)."""
    if pid is not None:
        process.renice(pid, value)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):  # gone, or exiting as we read (ESRCH: ProcessLookupError)
        return True
