"""How fast a killed service is back: the six services as real processes (`python -m
services.<name>`, configured by environment as `make up` does) on the session's real stores, run
by the real supervisor (scripts.stack.supervisor, in a scratch data folder). Each service is
killed with SIGKILL, twice, and the test records the seconds from the kill to gRPC health SERVING
again (issue 21: within 3 s on a quiet 2-core machine), and from the new process's spawn to
SERVING (its boot). A second test holds the supervisor to its restart policy with plain processes:
a process that was ready is restarted at once, a crash loop backs off 1, 2, 4 s.

The table is printed (`-s` shows it); the assertion is only a generous bound that tells "comes
back" from "falls over", since the machine may be busy with other work.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.stack.paths import REPO
from scripts.stack.process import ManagedProcess, free_port, port_open
from scripts.stack.services import Identity
from scripts.stack.stores import scratch_dir
from scripts.stack.supervisor import STABLE_AFTER_S
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration

SERVICES = ("payment", "reservation", "movie", "review", "notification", "viewpage")
KILLS = 2  # per service
BOUND_S = 20.0  # "comes back" vs "falls over"; the target (3 s on a quiet machine) is reported
COLD_START_S = 240.0  # all six at once, compiling their bytecode, on a busy machine
PROBE_EVERY_S = 0.02

# The supervisor of `make up` (scripts.stack.supervisor), given its components in a JSON file:
# per name the argv, the environment, the log and the gRPC port whose health says "ready" (none:
# ready as soon as it runs; -1: never ready).
SUPERVISOR = """
import json, logging, sys
from pathlib import Path
from scripts.stack.components import Component
from scripts.stack.paths import REPO
from scripts.stack.process import ManagedProcess
from scripts.stack.services import grpc_serving
from scripts.stack.supervisor import Supervisor

def component(name, spec):
    port = spec["port"]
    ready = (lambda: True) if port is None else (lambda: False) if port < 0 else (lambda: grpc_serving(port))
    def make():
        return ManagedProcess(name, spec["argv"], Path(spec["log"]), ready, env=spec["env"], cwd=REPO)
    return Component(name, name, ready, make_process=make)

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
specs = json.loads(Path(sys.argv[1]).read_text())
sys.exit(Supervisor([component(name, spec) for name, spec in specs.items()]).run())
"""


def serving(port: int) -> bool:
    """One health check on a fresh channel (a reused one would back off between refusals)."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def gone(pid: int) -> bool:
    """The process is dead (a zombie holds no sockets)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@dataclass
class Restart:
    kill_to_serving: float
    spawn_to_serving: float


@dataclass
class Restarts:
    port: int
    runs: list[Restart] = field(default_factory=list)


def service_envs(
    identity: Identity, pg: Server, mongo: Server, redis: Server, nats: Server, smtp_port: int
) -> dict[str, dict[str, str]]:
    """Each service's whole configuration, as `make up` gives it (a database or prefix of its own)."""

    async def databases() -> dict[str, str]:
        return {name: await create_database(pg, name) for name in ("payment", "reservation", "notification")}

    dbs = asyncio.run(databases())
    mongo_prefix = str(mongo.extra.get("db_prefix", ""))
    ports = {name: free_port() for name in SERVICES}
    envs: dict[str, dict[str, str]] = {
        "payment": {"PAYMENT_DATABASE_URL": dbs["payment"]},
        "reservation": {
            "RESERVATION_DATABASE_URL": dbs["reservation"],
            "RESERVATION_PAYMENT_ADDRESS": f"127.0.0.1:{ports['payment']}",
            "RESERVATION_PAYMENT_TOKEN_FILE": str(identity.service_token_file("reservation")),
        },
        "movie": {
            "MOVIE_MONGO_URL": mongo.url,
            "MOVIE_MONGO_DATABASE": f"{mongo_prefix}movie_{uuid.uuid4().hex[:8]}",
        },
        "review": {
            "REVIEW_MONGO_URL": mongo.url,
            "REVIEW_MONGO_DATABASE": f"{mongo_prefix}review_{uuid.uuid4().hex[:8]}",
        },
        "notification": {
            "NOTIFICATION_DATABASE_URL": dbs["notification"],
            "NOTIFICATION_SMTP_HOST": "127.0.0.1",
            "NOTIFICATION_SMTP_PORT": str(smtp_port),
        },
        "viewpage": {"VIEWPAGE_REDIS_URL": redis.url, "VIEWPAGE_KEY_PREFIX": f"restart{uuid.uuid4().hex[:8]}"},
    }
    for name, env in envs.items():
        prefix = name.upper()
        env.update(
            {
                f"{prefix}_NATS_URL": nats.url,
                f"{prefix}_GRPC_PORT": str(ports[name]),
                f"{prefix}_METRICS_PORT": str(free_port()),
                f"{prefix}_DRAIN_S": "0.2",
                **identity.auth_env(prefix),
            }
        )
    return envs


@pytest.fixture(scope="module")
def smtp_sink() -> Iterator[int]:
    root = scratch_dir("restart-smtp")
    port = free_port()
    sink = ManagedProcess(
        "smtp",
        [sys.executable, "-m", "scripts.smtp_sink", "--port", str(port), "--dir", str(root / "mail")],
        root / "smtp.log",
        lambda: port_open(port),
        cwd=REPO,
    )
    sink.start()
    try:
        sink.wait_ready(30)
        yield port
    finally:
        sink.stop()


def format_table(restarts: dict[str, Restarts]) -> str:
    lines = [
        f"seconds, median (worst) of {KILLS} kills; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores",
        f"{'service':<13} {'kill -> SERVING':>17} {'spawn -> SERVING':>17}",
    ]
    for name, r in restarts.items():
        kills = [run.kill_to_serving for run in r.runs]
        boots = [run.spawn_to_serving for run in r.runs]
        lines.append(
            f"{name:<13} {statistics.median(kills):>8.2f} ({max(kills):>5.2f}) "
            f"{statistics.median(boots):>9.2f} ({max(boots):>5.2f})"
        )
    return "\n".join(lines)


class Supervised:
    """The supervisor process and what it writes to its state file."""

    def __init__(self, root: Path, specs: dict[str, dict[str, Any]]) -> None:
        self.data = root / "data"
        (root / "specs.json").write_text(json.dumps(specs))
        self.process = ManagedProcess(
            "supervisor",
            [sys.executable, "-c", SUPERVISOR, str(root / "specs.json")],
            root / "supervisor.log",
            lambda: True,
            env={"CINEMA_DATA_DIR": str(self.data)},
            cwd=REPO,
        )

    def components(self) -> dict[str, dict[str, Any]]:
        try:
            state = json.loads((self.data / "run" / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet
            return {}
        return {c["name"]: c for c in state["components"]}

    def wait_all_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            components = self.components()
            if components and all(c["phase"] == "ready" for c in components.values()):
                return
            assert self.process.running(), f"the supervisor exited:\n{self.process.log_tail()}"
            time.sleep(0.2)
        raise AssertionError(f"not every service was ready within {timeout_s:.0f} s: {self.components()}")

    def wait_ready(self, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.components().get(name, {}).get("phase") != "ready":
            assert time.monotonic() < deadline, f"{name} not ready within {timeout_s:.0f} s: {self.components()}"
            assert self.process.running(), f"the supervisor exited:\n{self.process.log_tail()}"
            time.sleep(0.05)

    def kill_and_time(self, name: str, port: int) -> Restart:
        """SIGKILL the service once it has run stably; time its return to SERVING."""
        while True:
            component = self.components()[name]
            if component["phase"] == "ready" and time.time() - component["started_at"] > STABLE_AFTER_S + 0.5:
                break
            time.sleep(0.2)
        pid = component["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while not gone(pid):
            time.sleep(0.001)
        while not serving(port):
            assert time.monotonic() - killed < 60, f"{name} not SERVING 60 s after the kill: {self.components()[name]}"
            time.sleep(PROBE_EVERY_S)
        back, back_wall = time.monotonic(), time.time()
        component = self.components()[name]
        assert component["pid"] != pid, component
        return Restart(back - killed, back_wall - component["started_at"])


def test_a_killed_service_is_serving_again_within_seconds(
    postgres_server: Server,
    mongo_server: Server,
    redis_server: Server,
    system_nats: Server,
    smtp_sink: int,
) -> None:
    root = scratch_dir("restart")
    identity = Identity(root)
    envs = service_envs(identity, postgres_server, mongo_server, redis_server, system_nats, smtp_sink)
    specs = {
        name: {
            "argv": [sys.executable, "-m", f"services.{name}"],
            "env": env,
            "log": str(root / f"{name}.log"),
            "port": int(env[f"{name.upper()}_GRPC_PORT"]),
        }
        for name, env in envs.items()
    }
    supervised = Supervised(root, specs)
    supervised.process.start()
    try:
        supervised.wait_all_ready(COLD_START_S)
        restarts = {name: Restarts(int(envs[name][f"{name.upper()}_GRPC_PORT"])) for name in SERVICES}
        for _ in range(KILLS):
            for name, r in restarts.items():
                r.runs.append(supervised.kill_and_time(name, r.port))
    finally:
        supervised.process.stop(timeout=60)
    table = format_table(restarts)
    print("\n" + table)
    slow = {name: max(run.kill_to_serving for run in r.runs) for name, r in restarts.items()}
    assert all(seconds < BOUND_S for seconds in slow.values()), f"not SERVING within {BOUND_S:.0f} s: {slow}\n{table}"


def test_the_supervisor_restarts_a_stable_process_at_once_and_backs_off_a_crash_loop() -> None:
    root = scratch_dir("restart-loop")
    specs: dict[str, dict[str, Any]] = {
        "steady": {"argv": [sys.executable, "-c", "import time; time.sleep(600)"], "port": None},
        "crashing": {"argv": [sys.executable, "-c", "raise SystemExit(3)"], "port": -1},
    }
    for name, spec in specs.items():
        spec.update(env={}, log=str(root / f"{name}.log"))
    supervised = Supervised(root, specs)
    supervised.process.start()
    try:
        supervised.wait_ready("steady", 60)
        pid = supervised.components()["steady"]["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while (steady := supervised.components()["steady"])["pid"] in (pid, None):
            assert time.monotonic() - killed < 10, steady
            time.sleep(0.01)
        respawn_s = time.monotonic() - killed
        deadline = time.monotonic() + 30
        while supervised.components()["crashing"]["restarts"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        supervised.process.stop(timeout=60)
    log = (root / "supervisor.log").read_text()
    print(f"\nkill -9 -> a new process: {respawn_s:.3f} s")
    assert steady["restarts"] == 1 and "restarting steady in 0.0 s" in log, log
    assert respawn_s < 5, f"{respawn_s:.2f} s from the kill to a new process"
    delays = [line.rsplit(" in ", 1)[1] for line in log.splitlines() if "restarting crashing in" in line]
    assert delays[:3] == ["1.0 s", "2.0 s", "4.0 s"], log
