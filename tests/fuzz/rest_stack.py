"""The whole local system for the REST fuzz test (tests/fuzz/test_rest_openapi.py), and what that
test requires of an HTTP answer.

One scratch stack (`python -m scripts.stack up` in a folder of its own, every port free) is
reached through its Envoy ingress as a client would: tokens from identity's password grant for
the demo customer and manager. The store invariants of tests/fuzz/invariants.py read the stack's
own PostgreSQL and MongoDB through a `FuzzSystem` that names them (no process of its own).

An error answer of the REST edge is a `google.rpc.Status` JSON body (code, message, details); the
grpc-gateway documents it as the `default` response of every operation. Its message is held to
the same rules as a gRPC error's (tests/fuzz/checks.py: `error_problems`).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx

from scripts.stack import stores
from scripts.stack.services import Identity
from tests.fuzz.checks import error_problems, log_problems
from tests.fuzz.system import FuzzSystem, LogCursor
from tests.support.scratch_stack import ScratchStack

# The logs whose lines must stay clean: the six services and the edge's own processes (the
# gateway and identity log JSON). Envoy's access log is plain text with start-up warnings.
CHECKED_LOGS = ("movie", "review", "reservation", "payment", "notification", "viewpage", "gateway", "identity")


class RestStack(ScratchStack):
    def log_cursors(self) -> dict[str, LogCursor]:
        """A cursor at the current end of each checked log."""
        cursors = {}
        for name in CHECKED_LOGS:
            path = self.data / "logs" / f"{name}.log"
            cursors[name] = LogCursor(path, path.stat().st_size if path.exists() else 0)
        return cursors

    def stores(self) -> FuzzSystem:
        """The stack's stores, named as tests/fuzz/invariants.py reads them (the services' default
        database names: the stack sets none)."""
        pg = stores.PostgresSpec(self.data / "postgres", self.port("CINEMA_PG_PORT"))
        return FuzzSystem(
            identity=Identity(self.data),
            processes={},
            reservation_db=pg.url("reservation"),
            payment_db=pg.url("payment"),
            notification_db=pg.url("notification"),
            mongo_url=stores.mongo_url(self.port("CINEMA_MONGO_PORT")),
            movie_database="movie",
            review_database="review",
            redis_url=stores.redis_url(self.port("CINEMA_REDIS_PORT")),
            viewpage_prefix="",
            nats_url=f"nats://127.0.0.1:{self.port('CINEMA_NATS_PORT')}",
        )


def new_log_problems(cursors: dict[str, LogCursor]) -> list[str]:
    found = []
    for name, cursor in cursors.items():
        found += [f"the {name} log shows: {line}" for line in log_problems(cursor.new_lines(), name)]
    return found


class _StatusAsRpcError(grpc.RpcError):
    """A REST error body seen as the failed call it stands for, so tests/fuzz/checks.py can judge
    it (no trailers: the body is the rich status)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self._code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
        self._message = message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return ()


def status_body(response: httpx.Response | Any) -> dict[str, Any] | None:
    """The `google.rpc.Status` of an error answer, or None when the body is not one."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("code"), int) or not isinstance(body.get("message"), str):
        return None
    if set(body) - {"code", "message", "details"} or not isinstance(body.get("details", []), list):
        return None
    if any(not isinstance(d, dict) or not isinstance(d.get("@type"), str) for d in body.get("details", [])):
        return None
    return body


def answer_problems(status: int, headers: Any, body: dict[str, Any] | None, raw: bytes) -> list[str]:
    """Why an HTTP answer of the edge is not acceptable (empty when it is)."""
    if status == 429 and headers.get("x-rate-limited") == "ingress":
        return []  # the ingress' token bucket, not the API's answer
    if status < 400:
        return []
    shown = raw[:300].decode("utf-8", errors="replace")
    if body is None:
        return [f"HTTP {status} without a google.rpc.Status body: {shown!r}"]
    problems = []
    if status >= 500 and status != 503:
        problems.append(f"HTTP {status} (server error): {shown!r}")
    if body["code"] == 0:
        problems.append(f"HTTP {status} with status code 0 (OK)")
    err = _StatusAsRpcError(body["code"], body["message"])
    problems += [f"HTTP {status}: {p}: {err.code().name} {body['message'][:300]!r}" for p in error_problems(err)]
    return problems


__all__ = [
    "CHECKED_LOGS",
    "RestStack",
    "answer_problems",
    "new_log_problems",
    "status_body",
]
