"""What the fuzz tests require of an answer and of a service's log.

An error answer: its code is never INTERNAL, UNKNOWN or DATA_LOSS (each means the service did
not understand its own failure), its message is non-empty and readable (no traceback, no Python
repr of an object, class or exception, bounded length), and its rich status, when there is
one, agrees with the call's code.

A log: no line carries a traceback and none is at ERROR or above.

The one exception is grpcio's own answer to bytes that are not a request message at all. The
grpc.aio server (grpcio 1.85) deserializes the request before any handler or interceptor runs;
when the protobuf parser raises DecodeError it answers UNKNOWN with the message
"Unexpected <class 'google.protobuf.message.DecodeError'>: Error parsing message with type '<T>': ..."
and logs "Unexpected [DecodeError] raised by servicer method [<path>]" at ERROR on the logger
`grpc._cython.cygrpc`, with a traceback through grpcio's Cython frames only. (The sync server
answers INTERNAL "Exception deserializing request!" instead.) `is_grpcio_decode_failure` and
`is_grpcio_decode_log` accept exactly that, for the request type of the method called, and
nothing from our own code.
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

_DECODE_FAILURE = re.compile(
    r"^Unexpected <class 'google\.protobuf\.message\.DecodeError'>: "
    r"Error parsing message with type '(?P<type>[\w.]+)'"
)


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


def is_grpcio_decode_failure(err: grpc.RpcError, request_type: str) -> bool:
    """grpc.aio's own answer to a payload that is not a `request_type` message (see above)."""
    if err.code() != grpc.StatusCode.UNKNOWN:
        return False
    match = _DECODE_FAILURE.match(err.details() or "")
    return match is not None and match.group("type") == request_type


def is_grpcio_decode_log(entry: dict[str, Any] | None, method_path: str) -> bool:
    """grpc.aio's own ERROR line for an undecodable request to `method_path`, with a traceback
    that runs through grpcio's Cython code only."""
    if entry is None or entry.get("logger") != "grpc._cython.cygrpc":
        return False
    if entry.get("message") != f"Unexpected [DecodeError] raised by servicer method [{method_path}]":
        return False
    trace = str(entry.get("exc_info", ""))
    frames = re.findall(r'File "([^"]+)"', trace)
    last = trace.strip().splitlines()[-1] if trace.strip() else ""
    return (
        bool(frames)
        and all(frame.startswith("src/python/grpcio/grpc/_cython/") for frame in frames)
        and last.startswith("google.protobuf.message.DecodeError: Error parsing message with type")
    )


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


KNOWN_FINDINGS: tuple[KnownFinding, ...] = (
    KnownFinding(
        "movie",
        "cinema.consumer",
        re.compile(
            r"event \S+ \(cinema\.review\.v1\.Review(Posted|Deleted)\) failed \d+ times; parking it: "
            r"review \S+ is about movie \S+, which this catalog does not know"
        ),
        "CreateReview of a well-formed movie id nobody registered is accepted by design (review never calls "
        "movie: services/review/service_layer/reviews.py), and the movie service parks the ReviewPosted it cannot "
        "count at ERROR, by design too (services/movie/service_layer/reviews.py): any customer can fill the "
        "dead-letter stream. Which side changes is for the two services to decide.",
    ),
)


def log_problems(lines: list[str], decode_failures_of: str | None = None, service: str = "") -> list[str]:
    """Lines of a service's log that show a failure: a traceback, or ERROR and above. With
    `decode_failures_of` (a method path), grpcio's own decode-failure lines for it are allowed;
    the KNOWN_FINDINGS of `service` are allowed too."""
    problems = []
    for line, entry in log_entries(lines):
        if decode_failures_of is not None and is_grpcio_decode_log(entry, decode_failures_of):
            continue
        if any(known.matches(service, entry) for known in KNOWN_FINDINGS):
            continue
        level = str(entry.get("level", "")) if entry is not None else ""
        if "Traceback" in line or level in ("ERROR", "CRITICAL"):
            problems.append(line if len(line) <= 3000 else f"{line[:800]} ... {line[-2000:]}")
    return problems
