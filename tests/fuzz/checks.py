"""What the fuzz tests require of an answer and of a service's log.

An error answer: its code is never INTERNAL, UNKNOWN or DATA_LOSS (each means the service did
not understand its own failure), its message is non-empty and readable (no traceback, no Python
repr of an object, class or exception, bounded length), and its rich status, when there is
one, agrees with the call's code.

A log: no line carries a traceback and none is at ERROR or above.

Bytes that are not a request message at all: grpc.aio (grpcio 1.85) deserializes the request
before any handler or interceptor runs and, when the parser raises, answers UNKNOWN and logs a
traceback at ERROR. The kit's handler wrapping (services/kit/rpc_wrapping.py) turns that into
INVALID_ARGUMENT "the request is not a valid <T> message (...)" with no log line;
`is_undecodable_refusal` accepts exactly that, for the request type of the method called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc

from services.kit.grpc_errors import rich_status
from tests.fuzz.system import log_entries

FORBIDDEN_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})
MAX_MESSAGE_CHARS = 2000

# Signs of Python internals leaking into a message meant for a client.
_NOISE = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"]+", line \d+'),
    re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>"),
    re.compile(r"<(class|function|module|coroutine|bound method) [^>]*>"),
    re.compile(r"\b[A-Z]\w*(Error|Exception)\("),
    re.compile(r"\b(asyncpg|pymongo|bson|redis|nats|google\.protobuf)\.[\w.]*(Error|Exception)\b"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_UNDECODABLE = re.compile(r"^the request is not a valid (?P<type>[\w.]+) message \(")


def error_problems(err: grpc.RpcError) -> list[str]:
    """Why an error answer is not acceptable (empty when it is)."""
    code: grpc.StatusCode = err.code()  # a call's error is also a grpc.Call
    details: str = err.details() or ""
    problems = []
    if code in FORBIDDEN_CODES:
        problems.append(f"status {code.name}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        problems.append("no answer within the deadline (a hang)")
    if not details.strip():
        problems.append("empty error message")
    if len(details) > MAX_MESSAGE_CHARS:
        problems.append(f"error message of {len(details)} characters")
    problems += [f"message matches {noise.pattern!r}" for noise in _NOISE if noise.search(details)]
    if _CONTROL.search(details):
        problems.append("control characters in the error message")
    try:
        status = rich_status(err)
    except Exception as exc:  # a details trailer that does not parse is a finding too
        problems.append(f"unreadable grpc-status-details-bin: {exc!r}")
    else:
        if status is not None and status.code != code.value[0]:
            problems.append(f"rich status code {status.code} differs from the call's {code.name}")
    return problems


def is_grpcio_size_limit(err: grpc.RpcError) -> bool:
    """grpcio's own refusal of a request over its 4 MiB receive limit (before any of our code)."""
    details = err.details() or ""
    return bool(
        err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and details.startswith("SERVER: Received message larger than max")
    )


def is_undecodable_refusal(err: grpc.RpcError, request_type: str) -> bool:
    """The kit's answer to a payload that is not a `request_type` message (see above)."""
    if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
        return False
    match = _UNDECODABLE.match(err.details() or "")
    return match is not None and match.group("type") == request_type


@dataclass(frozen=True)
class KnownFinding:
    """A log line the fuzzer provokes that is reported, not fixed: a design decision between
    services rather than a small fix. Matched exactly (service, logger, whole message)."""

    service: str
    logger: str
    message: re.Pattern[str]
    why: str

    def matches(self, service: str, entry: dict[str, Any] | None) -> bool:
        return (
            entry is not None
            and service == self.service
            and entry.get("logger") == self.logger
            and "exc_info" not in entry
            and self.message.fullmatch(str(entry.get("message", ""))) is not None
        )


# None today. (The one there was -- reviews of movies nobody registered, parked by the movie
# service at ERROR -- is fixed: review accepts a review only for a movie its replica of the
# catalog knows, and an event that can never apply is set aside, not dead-lettered.)
KNOWN_FINDINGS: tuple[KnownFinding, ...] = ()


def log_problems(lines: list[str], service: str = "") -> list[str]:
    """Lines of a service's log that show a failure: a traceback, or ERROR and above; the
    KNOWN_FINDINGS of `service` are allowed."""
    problems = []
    for line, entry in log_entries(lines):
        if any(known.matches(service, entry) for known in KNOWN_FINDINGS):
            continue
        level = str(entry.get("level", "")) if entry is not None else ""
        if "Traceback" in line or level in ("ERROR", "CRITICAL"):
            problems.append(line if len(line) <= 3000 else f"{line[:800]} ... {line[-2000:]}")
    return problems
