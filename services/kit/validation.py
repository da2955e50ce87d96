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
"""

from __future__ import annotations

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.message import Message

from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.fast_validation import plan_for

# One validator for the process: it compiles the rules of each message type once and caches them.
_VALIDATOR = protovalidate.Validator()  # type: ignore[no-untyped-call]  # its __init__ is unannotated


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
    try:
        _VALIDATOR.validate(message)
    except protovalidate.ValidationError as exc:
        return tuple(
            FieldViolation(field_path(v.proto.field) or v.proto.rule_id, v.proto.message) for v in exc.violations
        )
    return ()


def validate(message: Message) -> None:
    """Raise InvalidArgument naming every field of `message` that breaks a rule of its contract."""
    violations = violations_of(message)
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid {message.DESCRIPTOR.name}: {summary}", violations)
