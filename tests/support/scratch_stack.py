"""The whole local system as `make up` runs it, in a scratch folder with every port free (the
real supervisor: `python -m scripts.stack up`), for tests that use it through its one address,
the Envoy ingress. `make down` on the way out. Never the developer's own `make up`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from scripts.stack import components
from scripts.stack.stores import scratch_dir

REPO = Path(__file__).resolve().parents[2]
CARD = {"number": "4242424242424242", "expiryMonth": 12, "expiryYear": 2035, "cvc": "123"}
S = TypeVar("S", bound="ScratchStack")


@dataclass
class ScratchStack:
    env: dict[str, str]
    data: Path

    def port(self, var: str) -> int:
        return int(self.env[var])

    @property
    def ingress(self) -> str:
        return f"127.0.0.1:{self.port('CINEMA_INGRESS_PORT')}"

    @property
    def base(self) -> str:
        return f"http://{self.ingress}"

    def token(self, user: tuple[str, str]) -> str:
        """An access token by the OAuth2 password grant, through the ingress."""
        reply = httpx.post(
            f"{self.base}/oauth2/token",
            data={"grant_type": "password", "username": user[0], "password": user[1]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["access_token"])

    def bearer(self, user: tuple[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def pid(self, name: str) -> int:
        """The process id of a component, from the supervisor's state file."""
        state = json.loads((self.data / "run" / "state.json").read_text())
        pid = next(c for c in state["components"] if c["name"] == name)["pid"]
        assert isinstance(pid, int), f"{name} has no pid: {state}"
        return pid


def run_stack(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.stack", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def scratch_env(data: Path) -> dict[str, str]:
    env = {**os.environ, **components.scratch_env(data)}
    for var in ("DATABASE_URL", "MONGO_URL", "REDIS_URL", "NATS_URL", "CINEMA_URL"):
        env.pop(var, None)  # the whole system of its own
    return env


@contextmanager
def scratch_stack(name: str, kind: type[S], extra_env: dict[str, str] | None = None) -> Iterator[S]:
    """`make up` in a scratch folder (every port free), yielded as `kind`; `make down` after.

    One instance of each service unless `extra_env` asks for more: these stacks test what the
    system does, and two shared cores boot eleven Python services half as fast as six. The
    redundancy of `make up`'s default (two instances) is what the chaos run (tests/chaos), the
    idle test and the local-runtime test run on."""
    data = scratch_dir(name)
    env = {**scratch_env(data), "CINEMA_INSTANCES": "1", **(extra_env or {})}
    started = time.monotonic()
    try:
        up = run_stack(env, "up", timeout=420)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        assert "demo catalog" in up.stdout, up.stdout[-3000:] + up.stderr[-3000:]
        print(f"\nscratch stack {name} up in {time.monotonic() - started:.1f} s")
        yield kind(env, data)
    finally:
        run_stack(env, "down", timeout=120)


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


__all__ = ["CARD", "ScratchStack", "bearer_header", "run_stack", "scratch_env", "scratch_stack"]
