"""`make up` / `make status` / `make down`: the supervisor runs the stores and restarts the dead.

Runs the real commands in a scratch data folder on free ports, so it never touches the
developer's own `make up`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.stack.components import scratch_env
from scripts.stack.stores import scratch_dir
from tests.support.servers import Server

pytestmark = pytest.mark.integration


def _stack(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.stack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _component(data: Path, name: str) -> dict[str, object]:
    state = json.loads((data / "run" / "state.json").read_text())
    return next(c for c in state["components"] if c["name"] == name)


def test_up_status_restart_down(redis_server: Server) -> None:
    data = scratch_dir("runtime")
    env = {
        **os.environ,
        **scratch_env(data),  # every port free: never the developer's own `make up`
        # one instance of each service: this is about the supervisor (two run in the chaos and idle tests)
        "CINEMA_INSTANCES": "1",
        # One store given by URL: the runtime uses it instead of starting its own.
        "REDIS_URL": redis_server.url,
    }
    try:
        up = _stack(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("postgres", "mongo", "redis", "nats"):
            assert f"\n{name}" in up.stdout and "healthy" in up.stdout
        assert "external (REDIS_URL)" in up.stdout
        assert "cinema-dev" not in up.stdout  # the password is never printed

        # A store that dies is restarted with backoff, and status shows the restart.
        nats_pid = _component(data, "nats")["pid"]
        assert isinstance(nats_pid, int)
        os.kill(nats_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            nats = _component(data, "nats")
            if nats["phase"] == "ready" and nats["restarts"] == 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"nats was not restarted: {_component(data, 'nats')}")
        status = _stack(env, "status")
        assert status.returncode == 0, status.stdout
        nats_line = next(line for line in status.stdout.splitlines() if line.startswith("nats "))
        assert nats_line.split()[1] == "healthy" and nats_line.split()[4] == "1"

        # The data survives a restart of the whole runtime (the PostgreSQL cluster is reused).
        assert _stack(env, "down").returncode == 0
        stopped = _stack(env, "status")
        assert stopped.returncode == 1 and "not running" in stopped.stdout
        again = _stack(env, "up")
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        _stack(env, "down")
