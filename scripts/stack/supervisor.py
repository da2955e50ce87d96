"""The local supervisor behind `make up`, `make down` and `make status`.

`up` starts a detached supervisor process that runs every component, restarts one that
dies (the local counterpart of a Kubernetes liveness probe), and writes what it knows to
`.data/run/state.json`. A component that dies after it was ready is started again at once (the
exit wakes the supervisor by SIGCHLD, not by a poll); one that dies again before it ran stably,
or that never got ready, is restarted with exponential backoff, so a crash loop does not spin.
`down` asks it to stop (SIGTERM): it stops the components in reverse order, gracefully.
`status` reads the state and probes every component live; it exits non-zero when anything is
not healthy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from scripts.stack.components import LOGS, Component, local_components
from scripts.stack.paths import DATA, REPO
from scripts.stack.process import ManagedProcess, ProcessFailed, port_open

RUN = DATA / "run"
STATE = RUN / "state.json"
PIDFILE = RUN / "supervisor.pid"
SUPERVISOR_LOG = LOGS / "supervisor.log"

BACKOFF_FIRST_S = 1.0  # the first restart of a process that never got ready, or died again soon
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 10.0  # ready, and started this long ago: a stable run; its next death restarts at once
TICK_S = 0.3  # the loop's pace while every component is settled (an exit wakes it at once)
TICK_STARTING_S = 0.1  # while a component starts or waits to restart: its readiness is seen sooner
PYCACHE = DATA / "pycache"
READY_TIMEOUT_S = 120.0  # one component, from its start
# The whole stack, from `make up`: the stores, then the services in their order, each within
# READY_TIMEOUT_S. On a busy 2-core machine the sum passes two minutes (seen: 125 s) though
# every component is healthy; it is the start of everything, not of one thing.
UP_TIMEOUT_S = 300.0

log = logging.getLogger("cinema.supervisor")


@dataclass
class ComponentState:
    name: str
    url: str
    note: str
    external: bool
    phase: str = "pending"  # pending | starting | ready | backoff | stopped | external
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: float | None = None
    next_start_at: float | None = None
    error: str = ""


class Supervisor:
    def __init__(self, components: list[Component]) -> None:
        self.components = components
        self.states = {c.name: ComponentState(c.name, c.url, c.note, c.external) for c in components}
        self.procs: dict[str, ManagedProcess] = {}
        self.failures: dict[str, int] = {c.name: 0 for c in components}
        self.stopping = False

    # -- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        os.environ.update(bytecode_env())
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # A child's exit (and a stop signal) wakes the loop at once through this socket.
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.signal(signal.SIGCHLD, _ignore_signal)
        previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        try:
            for c in self.components:
                if c.external:
                    self.states[c.name].phase = "external"
                elif not c.depends_on:
                    self._start(c)
            self._write_state()
            while not self.stopping:
                for c in self.components:
                    if not c.external:
                        self._tend(c)
                self._write_state()
                unsettled = any(s.phase in ("starting", "backoff") for s in self.states.values())
                if select.select([wake_r], [], [], TICK_STARTING_S if unsettled else TICK_S)[0]:
                    with contextlib.suppress(BlockingIOError):
                        while wake_r.recv(4096):
                            pass
            self._stop_all()
            self._write_state()
        finally:
            signal.set_wakeup_fd(previous_fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            wake_r.close()
            wake_w.close()
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def _start(self, c: Component) -> None:
        st = self.states[c.name]
        assert c.make_process is not None
        try:
            proc = c.make_process()
            proc.start()
        except Exception as exc:  # a broken data dir or a missing binary: back off, retry
            log.exception("could not start %s", c.name)
            self._schedule_restart(c, None, f"start failed: {exc}")
            return
        self.procs[c.name] = proc
        st.phase, st.pid, st.started_at, st.next_start_at, st.error = "starting", proc.pid, time.time(), None, ""
        log.info("started %s (pid %s)", c.name, proc.pid)

    def _tend(self, c: Component) -> None:
        st = self.states[c.name]
        proc = self.procs.get(c.name)
        now = time.time()
        if st.phase == "pending":
            if all(self.states[d].phase in ("ready", "external") for d in c.depends_on):
                self._start(c)
            return
        if st.phase == "backoff":
            if st.next_start_at is not None and now >= st.next_start_at:
                st.restarts += 1
                self._start(c)
            return
        if proc is None:
            return
        if not proc.running():
            was_ready = st.phase == "ready"
            code = proc.stop()
            log.warning("%s exited with code %s:\n%s", c.name, code, proc.log_tail(10))
            self._schedule_restart(c, code, f"exited with code {code}", was_ready=was_ready)
            if st.next_start_at is not None and st.next_start_at <= time.time():
                self._tend(c)  # at once (through _tend, so a subclass's say still counts)
            return
        if st.phase == "starting":
            try:
                ready = proc.ready()
            except Exception:
                ready = False
            if ready:
                if c.after_ready is not None:
                    try:
                        c.after_ready()
                    except Exception as exc:
                        log.exception("set-up of %s failed", c.name)
                        st.error = f"set-up failed: {exc}"
                        return
                st.phase = "ready"
                log.info("%s is ready at %s", c.name, c.url)
            elif st.started_at is not None and now - st.started_at > READY_TIMEOUT_S:
                log.error("%s not ready after %.0f s: killing it", c.name, READY_TIMEOUT_S)
                proc.kill()
        elif st.phase == "ready" and st.started_at is not None and now - st.started_at > STABLE_AFTER_S:
            self.failures[c.name] = 0

    def _schedule_restart(self, c: Component, code: int | None, error: str, *, was_ready: bool = False) -> None:
        st = self.states[c.name]
        self.failures[c.name] += 1
        delay = restart_delay(self.failures[c.name], was_ready)
        st.phase, st.pid, st.last_exit, st.error = "backoff", None, code, error
        st.next_start_at = time.time() + delay
        self.procs.pop(c.name, None)
        log.info("restarting %s in %.1f s", c.name, delay)

    def _stop_all(self) -> None:
        # Services first, all at once (each drains on its own), then the stores in reverse order.
        for c in self.components:
            proc = self.procs.get(c.name)
            if proc is not None and c.depends_on:
                proc.request_stop()
        for c in reversed(self.components):
            proc = self.procs.pop(c.name, None)
            if proc is not None:
                code = proc.stop()
                log.info("stopped %s (exit %s)", c.name, code)
            st = self.states[c.name]
            if not c.external:
                st.phase, st.pid = "stopped", None

    def _write_state(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        tmp = STATE.with_suffix(".tmp")
        payload = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "components": [asdict(s) for s in self.states.values()],
        }
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(STATE)


def restart_delay(failures: int, was_ready: bool) -> float:
    """Seconds before restarting a process that died, the `failures`-th time in a row (counted
    since it last ran stably). A process that was ready and had run stably is restarted at once:
    a crash (or a kill -9) costs only the new process's boot. Every other death backs off
    exponentially, so a crash loop costs little."""
    if was_ready and failures == 1:
        return 0.0
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1)))


def bytecode_env(pycache: Path = PYCACHE) -> dict[str, str]:
    """The environment that lets the Python children reuse their compiled bytecode.

    With PYTHONDONTWRITEBYTECODE set (and nothing compiled beforehand), every start of a service
    compiles its ~1,000 modules again: about 2 s of a 2-core machine's CPU per restart. The
    children then keep their bytecode under `pycache` (PYTHONPYCACHEPREFIX; the source tree
    stays clean, as the setting meant), written by the first start and read by every restart.
    Without that setting Python's own default (bytecode beside the sources) already does it.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return {}
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX") or str(pycache)}


def _ignore_signal(_signum: int, _frame: FrameType | None) -> None:
    """SIGCHLD's handler: the wake-up fd does the work (the default action would not write it)."""


# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------


def supervisor_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def read_state() -> dict[str, object] | None:
    try:
        data = json.loads(STATE.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def supervise() -> int:
    """Run in the foreground (the detached process `up` starts)."""
    RUN.mkdir(parents=True, exist_ok=True)
    PIDFILE.write_text(str(os.getpid()))
    try:
        return Supervisor(local_components()).run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            PIDFILE.unlink()


def up() -> int:
    if (pid := supervisor_pid()) is not None:
        print(f"already running (supervisor pid {pid})")
        return status()
    taken = [(c.name, port) for c in local_components() if not c.external for port in c.ports if port_open(port)]
    if taken:
        for name, port in taken:
            print(f"port {port} ({name}) is already in use by another process", file=sys.stderr)
        print("stop that process, or choose other ports (see README: CINEMA_*_PORT)", file=sys.stderr)
        return 1
    LOGS.mkdir(parents=True, exist_ok=True)
    STATE.unlink(missing_ok=True)
    print(f"starting the local system (data in {DATA}, logs in {LOGS}) ...", flush=True)
    with open(SUPERVISOR_LOG, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.stack", "supervise"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + UP_TIMEOUT_S
    shown: set[str] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"the supervisor exited with code {proc.returncode}; see {SUPERVISOR_LOG}", file=sys.stderr)
            return 1
        state = read_state()
        comps = state.get("components", []) if state else []
        assert isinstance(comps, list)
        for c in comps:
            if c["phase"] in ("ready", "external") and c["name"] not in shown:
                shown.add(c["name"])
                print(f"  {c['name']:<15} ready   {_redact(c['url'])}", flush=True)
        if comps and all(c["phase"] in ("ready", "external") for c in comps):
            print()
            code = status()
            if code == 0:
                _seed_and_show()
            return code
        time.sleep(0.3)
    print(f"not everything was ready within {UP_TIMEOUT_S:.0f} s; see {LOGS}", file=sys.stderr)
    status()
    return 1


def _seed_and_show() -> None:
    """Seed the demo catalog through the ingress as the demo manager (idempotent); print how to try it."""
    import asyncio

    import grpc

    from scripts.stack import components, edge
    from scripts.stack.seed import seed_demo_catalog

    identity = edge.IdentityEndpoints(components.IDENTITY_PORT)
    ingress = f"127.0.0.1:{components.INGRESS_PORT}"
    try:
        edge.wait_for_mesh(f"http://127.0.0.1:{components.ENVOY_ADMIN_PORT}")
        manager = edge.password_token(identity.token_url, *edge.DEMO_MANAGER)
        screenings = asyncio.run(seed_demo_catalog(ingress, manager))
    except Exception as error:  # a readable line, not a traceback: the stack itself is up
        details = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
        print(f"\ncould not seed the demo catalog: {details}\n(the stack is up; see {LOGS})", file=sys.stderr)
        return
    print("\ndemo catalog (registered through the movie service; reservation keeps a replica from its events):")
    for title, screening_id, starts in screenings:
        print(f"  {starts:%a %d %b %H:%M}  {title:<14} screening {screening_id}")
    user, password = edge.DEMO_CUSTOMER
    print(f"""
try it: everything goes through the ingress http://{ingress} (REST and gRPC)
  web screen        http://{ingress}/           (the board, live; sign in to pick seats)
  command line      .venv/bin/cinema login {user}; .venv/bin/cinema board
  API page          http://{ingress}/docs        (OpenAPI: http://{ingress}/openapi.json)
  demo accounts     {user} / {password} (customer), {"/".join(edge.DEMO_MANAGER)} (manager)
  get a token       curl -s -d grant_type=password -d username={user} -d password={password} \\
                         http://{ingress}/oauth2/token
  list movies       curl -s http://{ingress}/v1/movies
  walk-through      .venv/bin/python scripts/try_booking.py   (reserve two seats, review, cancel, over gRPC)
  traces (Jaeger)   {components.jaeger_spec().ui_url}/api/traces?service=reservation
                    .venv/bin/python -m scripts.observability.trace RESERVATION_ID   (one booking as a tree)
                    (a tenth of the traces are recorded: CINEMA_TRACE_SAMPLE_RATIO=1 make up records all)
  mail sent to customers (the local SMTP sink keeps it): {DATA / "mail"}
  make status | make down""")


def down() -> int:
    pid = supervisor_pid()
    if pid is None:
        print("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if supervisor_pid() is None:
            print("stopped")
            return 0
        time.sleep(0.2)
    print(f"the supervisor (pid {pid}) did not stop within 60 s", file=sys.stderr)
    return 1


def status() -> int:
    pid = supervisor_pid()
    state = read_state() or {}
    comps = state.get("components", [])
    recorded: dict[str, dict[str, object]] = {c["name"]: c for c in comps} if pid and isinstance(comps, list) else {}
    healthy_all = True
    print(f"supervisor: {'running, pid ' + str(pid) if pid else 'not running'}")
    print(f"{'component':<15} {'health':<9} {'phase':<9} {'pid':>7} {'restarts':>8}  url")
    for c in local_components():
        rec = recorded.get(c.name, {})
        try:
            healthy = c.check()
        except Exception:
            healthy = False
        healthy_all &= healthy
        phase = rec.get("phase", "external" if c.external else "stopped")
        print(
            f"{c.name:<15} {'healthy' if healthy else 'DOWN':<9} {phase:<9} {rec.get('pid') or '-':>7} "
            f"{rec.get('restarts', 0):>8}  {_redact(c.url)}" + (f"  ({c.note})" if c.note else "")
        )
        if rec.get("error") and not healthy:
            print(f"{'':<15} last error: {rec['error']}")
    print(f"logs: {LOGS}")
    owns_processes = any(not c.external for c in local_components())
    if owns_processes and pid is None:
        return 1
    return 0 if healthy_all else 1


def _redact(url: str) -> str:
    """Hide a password in a URL when printing it."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"up": up, "down": down, "status": status, "supervise": supervise}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m scripts.stack {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]]()
    except ProcessFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1


__all__ = ["Path", "bytecode_env", "main", "restart_delay"]
