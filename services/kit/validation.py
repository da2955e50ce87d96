"""Request validation against the `buf.validate` rules written in protos/ (protovalidate).

The gRPC adapters call `validate(request)` first thing: the rules of the contract (seat counts,
rating 1..5, UUID ids, string lengths ...) are then enforced in one place, the same for every
client, and a bad request becomes `InvalidArgument` with one `FieldViolation` per broken rule,
named by its field path (`seats`, `seats[2]`, `review.rating`).

Message-level CEL rules have no field path; ours use the path of the field they are about as their
rule id (e.g. `movie` and `movie.id` on UpdateMovieRequest), which is reported as the field.

protovalidate 1.2.0 runs on google.protobuf and imports `buf.validate.validate_pb2`, generated into
gen/python by scripts/genproto from the vendored third_party/buf/validate/validate.proto. Its CEL
interpreter costs milliseconds per request, so the field rules are checked by the plain-Python plans
of services.kit.fast_validation (same paths, messages and order; proved by
tests/unit/test_validation_equivalence.py); a message type with a rule that module does not
implement (UpdateMovieRequest's message-level CEL, for one) is validated by protovalidate.

Before any rule, `validate` refuses a Timestamp or Duration outside the range google.protobuf
defines for it (`malformed_times`), wherever it sits in the request: no rule could be evaluated on
it, and no handler could turn it into a datetime. It also refuses a NUL character in any string
(`strings_with_nul`): PostgreSQL, where most of what a request says ends up, cannot store one.

protovalidate itself is imported only by a process that needs it (importing it builds its CEL
parser: about half a second of a core, on every start): `prepare`, given a service's request
types at start-up, compiles their plans and loads protovalidate only when one of them falls back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

from buf.validate import validate_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.fast_validation import AnyDescriptor, plan_for

if TYPE_CHECKING:
    import protovalidate


@functools.cache
def _validator() -> protovalidate.Validator:
    """One validator for the process: it compiles the rules of each message type once and caches them."""
    import protovalidate

    return protovalidate.Validator()  # type: ignore[no-untyped-call]  # its __init__ is unannotated


def prepare(descriptors: Iterable[AnyDescriptor]) -> None:
    """Compile the checks of these message types now (a service's request types, before it
    serves), loading protovalidate if one of them needs it, so that no request waits for either."""
    for descriptor in descriptors:
        if plan_for(descriptor) is None:
            _validator()


def field_path(path: validate_pb2.FieldPath) -> str:
    """`review.rating`, `seats[2]`, `labels["k"]`: the path of a violation as callers write it."""
    parts: list[str] = []
    for element in path.elements:
        text = element.field_name
        subscript = element.WhichOneof("subscript")
        if subscript == "index":
            text += f"[{element.index}]"
        elif subscript == "string_key":
            text += f'["{element.string_key}"]'
        elif subscript is not None:
            key = getattr(element, subscript)
            text += f"[{str(key).lower() if subscript == 'bool_key' else key}]"
        parts.append(text)
    return ".".join(parts)


def violations_of(message: Message) -> tuple[FieldViolation, ...]:
    """Every broken rule of `message`, empty when it is valid."""
    plan = plan_for(message.DESCRIPTOR)
    if plan is not None:
        return plan.violations(message)
    return protovalidate_violations_of(message)


def protovalidate_violations_of(message: Message) -> tuple[FieldViolation, ...]:
    """Every broken rule of `message` as protovalidate itself reports it (the reference, and the
    fallback for rules the fast path does not implement)."""
    import protovalidate

    try:
        _validator().validate(message)
    except protovalidate.ValidationError as exc:
        return tuple(
            FieldViolation(field_path(v.proto.field) or v.proto.rule_id, v.proto.message) for v in exc.violations
        )
    return ()


# google.protobuf.Timestamp and Duration have a legal range (timestamp.proto, duration.proto). A value
# outside it travels on the wire, but neither protovalidate's CEL conversion nor ToDatetime() can
# take it: they raise OverflowError/ValueError, which would answer INTERNAL.
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_DURATION_MAX_SECONDS = 315_576_000_000  # 10,000 years
_NANOS_PER_SECOND = 1_000_000_000
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_TIMESTAMP_RANGE = "must be a valid timestamp, from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z"
_DURATION_RANGE = "must be a valid duration, within 10,000 years, with seconds and nanos of the same sign"

# Per message type: whether a Timestamp or Duration can occur anywhere inside it (most requests: no).
_HOLDS_TIME: dict[str, bool] = {}


def _holds_time(descriptor: AnyDescriptor, visiting: frozenset[str] = frozenset()) -> bool:
    name = descriptor.full_name
    if name in (_TIMESTAMP, _DURATION):
        return True
    if name not in _HOLDS_TIME:
        if name in visiting:
            return False  # a recursive type: its other fields decide
        inner = visiting | {name}
        _HOLDS_TIME[name] = any(
            fd.message_type is not None and _holds_time(fd.message_type, inner) for fd in descriptor.fields
        )
    return _HOLDS_TIME[name]


def _time_problem(value: timestamp_pb2.Timestamp | duration_pb2.Duration) -> str | None:
    seconds, nanos = value.seconds, value.nanos
    if isinstance(value, timestamp_pb2.Timestamp):
        in_range = _TIMESTAMP_SECONDS[0] <= seconds <= _TIMESTAMP_SECONDS[1] and 0 <= nanos < _NANOS_PER_SECOND
        return None if in_range else _TIMESTAMP_RANGE
    same_sign = seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0)
    in_range = abs(seconds) <= _DURATION_MAX_SECONDS and abs(nanos) < _NANOS_PER_SECOND and same_sign
    return None if in_range else _DURATION_RANGE


def malformed_times(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every Timestamp or Duration inside `message` that lies outside its legal range, by path."""
    found: list[FieldViolation] = []
    if not _holds_time(message.DESCRIPTOR):
        return found
    for fd, value in message.ListFields():
        sub = fd.message_type
        if sub is None or not _holds_time(sub):
            continue
        path = prefix + fd.name
        if sub.GetOptions().map_entry:
            items = [(f'{path}["{key}"]', item) for key, item in value.items() if isinstance(item, Message)]
        elif fd.is_repeated:
            items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
        else:
            items = [(path, value)]
        for item_path, item in items:
            if isinstance(item, timestamp_pb2.Timestamp | duration_pb2.Duration):
                problem = _time_problem(item)
                if problem is not None:
                    found.append(FieldViolation(item_path, problem))
            else:
                found += malformed_times(item, item_path + ".")
    return found


# PostgreSQL cannot store U+0000 in text (asyncpg raises "invalid byte sequence for encoding UTF8:
# 0x00"), and what one service accepts travels in events to services that store it there. No
# field of the contracts has a use for it, so a request carrying one is refused at the edge.
_NUL = "\x00"
_NUL_MESSAGE = "must not contain NUL (U+0000) characters"


def _nul_free_key(key: object) -> str:
    return str(key).replace(_NUL, "\\0")


def strings_with_nul(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every string inside `message` (fields, list items, map keys and values) holding a NUL, by path."""
    found: list[FieldViolation] = []
    for fd, value in message.ListFields():
        path = prefix + fd.name
        sub = fd.message_type
        if sub is not None and sub.GetOptions().map_entry:
            for key, item in value.items():
                item_path = f'{path}["{_nul_free_key(key)}"]'
                if (isinstance(key, str) and _NUL in key) or (isinstance(item, str) and _NUL in item):
                    found.append(FieldViolation(item_path, _NUL_MESSAGE))
                elif isinstance(item, Message):
                    found += strings_with_nul(item, item_path + ".")
        elif fd.type == fd.TYPE_STRING:
            items = enumerate(value) if fd.is_repeated else [(None, value)]
            found += [
                FieldViolation(path if index is None else f"{path}[{index}]", _NUL_MESSAGE)
                for index, item in items
                if _NUL in item
            ]
        elif sub is not None and fd.is_repeated:
            for index, item in enumerate(value):
                found += strings_with_nul(item, f"{path}[{index}].")
        elif sub is not None:
            found += strings_with_nul(value, path + ".")
    return found


def validate(message: Message) -> None:
    """Raise InvalidArgument naming every field of `message` that breaks a rule of its contract."""
    malformed = malformed_times(message)
    if malformed:
        # The rules cannot be evaluated on such a message (protovalidate raises): report these alone.
        summary = "; ".join(f"{v.field}: {v.description}" for v in malformed)
        raise InvalidArgument(f"invalid {message.DESCRIPTOR.name}: {summary}", tuple(malformed))
    violations = (*strings_with_nul(message), *violations_of(message))
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid {message.DESCRIPTOR.name}: {summary}", violations)
