"""The whole system as `make up` runs it, in a scratch folder on free ports, for the tests of the
faces people use (the web screen here, the `cinema` command in tests/cli): one stack per test
module, used only through its one address, the ingress.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import httpx

from tests.support.scratch_stack import CARD, REPO, ScratchStack
from tests.support.scratch_stack import scratch_stack as _scratch_stack

__all__ = ["CARD", "REPO", "Stack", "eventually", "scratch_stack"]

T = TypeVar("T")


class Stack(ScratchStack):
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


def scratch_stack(name: str) -> AbstractContextManager[Stack]:
    """`make up` in a scratch folder with every port free; `make down` on the way out."""
    return _scratch_stack(name, Stack)


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")
