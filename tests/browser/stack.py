"""The whole system as `make up` runs it, in a scratch folder on free ports, for the tests of the
faces people use (the web screen here, the `cinema` command in tests/cli): one stack per test
module, used only through its one address, the ingress.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from scripts.stack import components
from scripts.stack.stores import scratch_dir

REPO = Path(__file__).resolve().parents[2]
CARD = {"number": "4242424242424242", "expiryMonth": 12, "expiryYear": 2035, "cvc": "123"}
T = TypeVar("T")


@dataclass
class Stack:
    env: dict[str, str]
    data: Path

    def port(self, var: str) -> int:
        return int(self.env[var])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port('CINEMA_INGRESS_PORT')}"

    def token(self, user: tuple[str, str]) -> str:
        reply = httpx.post(
            f"{self.base}/oauth2/token",
            data={"grant_type": "password", "username": user[0], "password": user[1]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["access_token"])

    def get(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reply = httpx.get(f"{self.base}{path}", headers=headers, timeout=30)
        assert reply.status_code == 200, f"GET {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def reserve(self, token: str, screening_id: str, seats: list[str]) -> dict[str, Any]:
        """Reserve as another client would (REST), and return the reservation."""
        reply = httpx.post(
            f"{self.base}/v1/reservations",
            headers={"Authorization": f"Bearer {token}"},
            json={"screeningId": screening_id, "seats": seats, "requestId": str(uuid.uuid4()), "card": CARD},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        reservation: dict[str, Any] = reply.json()["reservation"]
        return reservation

    def free_seats(self, screening_id: str, count: int, *, rows: str = "HGFEDCBA") -> list[str]:
        """`count` free seats of a screening, from the back rows (tests share the demo screenings)."""
        availability = self.get(f"/v1/screenings/{screening_id}/availability")
        taken = set(availability.get("takenSeats") or [])
        per_row = int(availability["seatMap"]["seatsPerRow"])
        free = [f"{r}{n}" for r in rows for n in range(per_row, 0, -1) if f"{r}{n}" not in taken]
        assert len(free) >= count, availability
        return free[:count]

    def free_on_board(self, movie_id: str, screening_id: str) -> int:
        board = self.get(f"/v1/board/movies/{movie_id}")
        shown = next(s for s in board["movie"]["screenings"] if s["screeningId"] == screening_id)
        return int(shown["freeSeats"])


def _stack_command(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.stack", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _distinct_ports(data: Path) -> dict[str, str]:
    """scratch_env, drawn again if it handed one port out twice (each draw binds and closes a
    socket, so the kernel may give the same free port to two variables: seen once, a reservation
    service on the NATS monitor's port)."""
    for _ in range(20):
        env = components.scratch_env(data)
        ports = [value for key, value in env.items() if key.endswith("_PORT")]
        if len(set(ports)) == len(ports):
            return env
    raise AssertionError("scratch_env keeps handing out one port twice")


@contextmanager
def scratch_stack(name: str) -> Iterator[Stack]:
    """`make up` in a scratch folder with every port free; `make down` on the way out."""
    data = scratch_dir(name)
    env = {**os.environ, **_distinct_ports(data)}
    for var in ("DATABASE_URL", "MONGO_URL", "REDIS_URL", "NATS_URL", "CINEMA_URL"):
        env.pop(var, None)  # the whole system of its own
    started = time.monotonic()
    try:
        up = _stack_command(env, "up", timeout=300)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        assert "demo catalog" in up.stdout, up.stdout[-3000:] + up.stderr[-3000:]
        print(f"\nscratch stack {name} up in {time.monotonic() - started:.1f} s")
        yield Stack(env, data)
    finally:
        _stack_command(env, "down", timeout=120)


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")
