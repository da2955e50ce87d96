"""The `buf.validate` field rules of a message type, compiled once into plain-Python checks.

protovalidate evaluates every standard rule as a CEL program in pure Python, which costs several
milliseconds per request. The rules our contracts use (string lengths, patterns, UUIDs, integer
ranges, item counts, `required`, `ignore` ...) are simple enough to check directly, so this module
reads them from the descriptor options once per message type and builds a list of closures that
report the same violations as protovalidate 1.2.0: same field paths, same messages, same order.

Anything it does not implement (message-level or field-level CEL, oneof rules, map rules,
predefined rule extensions, timestamp/duration/bytes/float rules, unknown rule fields) makes the
whole message type fall back to protovalidate: `plan_for` returns None and `fallback_reason` says
why. A rule is never skipped silently. The rule ids declared by validate.proto for each implemented
rule are checked at compile time, so a changed validate.proto also falls back rather than drifts.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs
from buf.validate import validate_pb2
from google.protobuf import unknown_fields
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.kit.errors import FieldViolation

if TYPE_CHECKING:
    from types import ModuleType

    from google._upb import _message as upb

# What `Message.DESCRIPTOR` is typed as: the Python class or the upb one it is at run time.
AnyDescriptor: TypeAlias = "Descriptor | upb.Descriptor"

# A compiled check appends the violations of one message to `out`, under the field path `prefix`.
Check = Callable[[Message, str, list[FieldViolation]], None]
# A value check returns the violation message for one field value (or list item), None when it holds.
ValueCheck = Callable[[Any], str | None]


class Unsupported(Exception):
    """A rule the fast path does not implement: the message type is left to protovalidate."""


@dataclass
class MessagePlan:
    """The checks of one message type, in protovalidate's order (fields in declaration order)."""

    full_name: str
    checks: list[Check] = field(default_factory=list)

    def violations(self, message: Message) -> tuple[FieldViolation, ...]:
        out: list[FieldViolation] = []
        for check in self.checks:
            check(message, "", out)
        return tuple(out)


# Per descriptor: the plan, or why the type falls back. Filled lazily; plans never change after.
_PLANS: dict[Descriptor, MessagePlan | str] = {}


def plan_for(descriptor: AnyDescriptor) -> MessagePlan | None:
    """The compiled checks of `descriptor`, or None when protovalidate must validate it."""
    descriptor = cast("Descriptor", descriptor)
    cached = _PLANS.get(descriptor)
    if cached is None:
        building: dict[Descriptor, MessagePlan] = {}
        try:
            cached = _compile(descriptor, building, set())
        except Unsupported as exc:
            cached = str(exc)
        else:
            _PLANS.update(building)
        _PLANS[descriptor] = cached
    return cached if isinstance(cached, MessagePlan) else None


def fallback_reason(descriptor: AnyDescriptor) -> str | None:
    """Why `descriptor` is validated by protovalidate, or None when the fast path handles it."""
    plan_for(descriptor)
    cached = _PLANS[cast("Descriptor", descriptor)]
    return cached if isinstance(cached, str) else None


def _compile(
    descriptor: Descriptor, building: dict[Descriptor, MessagePlan], in_progress: set[Descriptor]
) -> MessagePlan:
    cached = _PLANS.get(descriptor)
    if isinstance(cached, str):
        raise Unsupported(cached)
    if cached is not None:
        return cached
    if descriptor in building:
        return building[descriptor]
    plan = MessagePlan(descriptor.full_name)
    building[descriptor] = plan
    in_progress.add(descriptor)
    if descriptor.GetOptions().HasExtension(validate_pb2.message):
        raise Unsupported(f"{descriptor.full_name} has message-level rules (buf.validate.message: CEL or oneof)")
    for oneof in descriptor.oneofs:
        if oneof.GetOptions().HasExtension(validate_pb2.oneof):
            raise Unsupported(f"{descriptor.full_name}.{oneof.name} has oneof rules")
    for fd in descriptor.fields:
        options = fd.GetOptions()
        if options.HasExtension(validate_pb2.field):
            rules: validate_pb2.FieldRules = options.Extensions[validate_pb2.field]
            # protovalidate skips an IGNORE_ALWAYS field entirely, its sub-message rules included.
            if rules.ignore == validate_pb2.IGNORE_ALWAYS:
                continue
            plan.checks.extend(_field_checks(fd, rules))
            if rules.repeated.items.ignore == validate_pb2.IGNORE_ALWAYS:
                continue
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                raise Unsupported(f"{fd.full_name} is a map of messages")
            continue
        sub = _compile(fd.message_type, building, in_progress)
        # A finished plan without checks (Timestamp, FieldMask ...) needs no recursion at run time.
        if fd.message_type not in in_progress and not sub.checks:
            continue
        plan.checks.append(_repeated_message_check(fd, sub) if _is_repeated(fd) else _sub_message_check(fd, sub))
    in_progress.discard(descriptor)
    return plan


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _sub_message_check(fd: FieldDescriptor, sub: MessagePlan) -> Check:
    name = fd.name

    def check(message: Message, prefix: str, out: list[FieldViolation]) -> None:
        if message.HasField(name):
            inner = prefix + name + "."
            for sub_check in sub.checks:
                sub_check(getattr(message, name), inner, out)

    return check


def _repeated_message_check(fd: FieldDescriptor, sub: MessagePlan) -> Check:
    name = fd.name

    def check(message: Message, prefix: str, out: list[FieldViolation]) -> None:
        for index, item in enumerate(getattr(message, name)):
            inner = f"{prefix}{name}[{index}]."
            for sub_check in sub.checks:
                sub_check(item, inner, out)

    return check


_FIELD_LEVEL = {"required", "ignore"}
_IGNORES = {validate_pb2.IGNORE_UNSPECIFIED, validate_pb2.IGNORE_IF_ZERO_VALUE, validate_pb2.IGNORE_ALWAYS}


def _reject_unknown(fd: FieldDescriptor, rules: Message, allowed: set[str]) -> None:
    if len(unknown_fields.UnknownFieldSet(rules)) > 0:
        raise Unsupported(f"{fd.full_name}: unknown fields in its {rules.DESCRIPTOR.name}")
    for rule_field, _ in rules.ListFields():
        if rule_field.is_extension or rule_field.name not in allowed:
            raise Unsupported(f"{fd.full_name}: rule {rule_field.full_name} is not implemented by the fast path")


def _field_checks(fd: FieldDescriptor, rules: validate_pb2.FieldRules) -> list[Check]:
    type_case = rules.WhichOneof("type")
    _reject_unknown(fd, rules, _FIELD_LEVEL | ({type_case} if type_case else set()))
    if rules.ignore not in _IGNORES:
        raise Unsupported(f"{fd.full_name}: unknown ignore value {rules.ignore}")
    if _is_repeated(fd):
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            raise Unsupported(f"{fd.full_name}: map rules are not implemented by the fast path")
        if type_case not in (None, "repeated"):
            raise Unsupported(f"{fd.full_name}: {type_case} rules on a repeated field")
        return [_repeated_check(fd, rules)]
    if type_case == "repeated":
        raise Unsupported(f"{fd.full_name}: repeated rules on a singular field")
    value_checks = _value_checks(fd, type_case, getattr(rules, type_case)) if type_case else []
    defined_only = type_case == "enum" and rules.enum.defined_only
    return [_singular_check(fd, rules, value_checks, defined_only=defined_only)]


def _singular_check(
    fd: FieldDescriptor, rules: validate_pb2.FieldRules, value_checks: Sequence[ValueCheck], *, defined_only: bool
) -> Check:
    name = fd.name
    required = rules.required
    # Like protovalidate: a field with presence (message, `optional`, oneof member) is only checked
    # when set, and IGNORE_IF_ZERO_VALUE skips an unset/zero one.
    ignore_empty = rules.ignore == validate_pb2.IGNORE_IF_ZERO_VALUE or fd.has_presence
    has_presence = fd.has_presence
    default = fd.default_value
    checks = tuple(value_checks)
    defined = frozenset(fd.enum_type.values_by_number) if defined_only and fd.enum_type is not None else frozenset()

    def check(message: Message, prefix: str, out: list[FieldViolation]) -> None:
        value = getattr(message, name)
        empty = not message.HasField(name) if has_presence else value == default
        if empty and required:
            out.append(FieldViolation(prefix + name, "value is required"))
        elif not (empty and ignore_empty):
            for value_check in checks:
                problem = value_check(value)
                if problem is not None:
                    out.append(FieldViolation(prefix + name, problem))
        # protovalidate checks defined_only after the other rules, whether the field was empty or not.
        if defined_only and value not in defined:
            out.append(FieldViolation(prefix + name, "value must be one of the defined enum values"))

    return check


def _repeated_check(fd: FieldDescriptor, rules: validate_pb2.FieldRules) -> Check:
    name = fd.name
    required = rules.required
    ignore_empty = rules.ignore == validate_pb2.IGNORE_IF_ZERO_VALUE
    list_checks = tuple(_list_checks(fd, rules.repeated)) if rules.HasField("repeated") else ()
    item_checks: tuple[ValueCheck, ...] = ()
    item_ignore_empty = False
    items = rules.repeated.items
    if rules.repeated.HasField("items") and items.ignore != validate_pb2.IGNORE_ALWAYS:
        item_case = items.WhichOneof("type")
        _reject_unknown(fd, items, {"ignore"} | ({item_case} if item_case else set()))
        if items.ignore not in _IGNORES:
            raise Unsupported(f"{fd.full_name}: unknown ignore value {items.ignore} on items")
        if item_case is not None:
            if item_case in ("enum", "repeated", "map"):
                # protovalidate 1.2.0 does not apply defined_only to items; not worth mirroring.
                raise Unsupported(f"{fd.full_name}: {item_case} rules on items")
            item_checks = tuple(_value_checks(fd, item_case, getattr(items, item_case)))
        item_ignore_empty = items.ignore == validate_pb2.IGNORE_IF_ZERO_VALUE

    def check(message: Message, prefix: str, out: list[FieldViolation]) -> None:
        values = getattr(message, name)
        if not values:
            if required:
                out.append(FieldViolation(prefix + name, "value is required"))
                return
            if ignore_empty:
                return
        path = prefix + name
        for list_check in list_checks:
            problem = list_check(values)
            if problem is not None:
                out.append(FieldViolation(path, problem))
        if item_checks:
            for index, item in enumerate(values):
                if item_ignore_empty and not item:
                    continue
                for item_check in item_checks:
                    problem = item_check(item)
                    if problem is not None:
                        out.append(FieldViolation(f"{path}[{index}]", problem))

    return check


def _expect_ids(fd: FieldDescriptor, rule_field: FieldDescriptor, expected: Sequence[str]) -> None:
    """The rule ids validate.proto declares for `rule_field` must be those this module implements."""
    declared = [rule.id for rule in rule_field.GetOptions().Extensions[validate_pb2.predefined].cel]
    if declared != list(expected):
        raise Unsupported(
            f"{fd.full_name}: {rule_field.full_name} declares rules {declared}, expected {list(expected)}"
        )


def _list_checks(fd: FieldDescriptor, rules: validate_pb2.RepeatedRules) -> list[ValueCheck]:
    checks: list[ValueCheck] = []
    for rule_field, value in rules.ListFields():
        name = rule_field.name
        if name == "items":
            continue
        if rule_field.is_extension:
            raise Unsupported(f"{fd.full_name}: predefined rule {rule_field.full_name}")
        _expect_ids(fd, rule_field, [f"repeated.{name}"])
        if name == "min_items":
            checks.append(_against(_size_below, value, f"must contain at least {value} item(s)"))
        elif name == "max_items":
            checks.append(_against(_size_above, value, f"must contain no more than {value} item(s)"))
        elif name == "unique":
            if not value:
                continue
            if fd.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
                raise Unsupported(f"{fd.full_name}: unique on {fd.type} items")
            checks.append(_bound(lambda v: len(set(v)) != len(v), "repeated value must contain unique items"))
        else:
            raise Unsupported(f"{fd.full_name}: repeated rule {name}")
    return checks


def _bound(fails: Callable[[Any], bool], message: str) -> ValueCheck:
    def check(value: Any) -> str | None:
        return message if fails(value) else None

    return check


def _against(fails: Callable[[Any, Any], bool], rule_value: Any, message: str) -> ValueCheck:
    """A check of a value against one rule value (bound now, not when the loop has moved on)."""

    def check(value: Any) -> str | None:
        return message if fails(value, rule_value) else None

    return check


def _size_below(value: Sized, n: int) -> bool:
    return len(value) < n


def _size_above(value: Sized, n: int) -> bool:
    return len(value) > n


def _no_match(value: str, pattern: Any) -> bool:
    return pattern.search(value) is None


_INT_TYPES = {
    "int32": FieldDescriptor.TYPE_INT32,
    "int64": FieldDescriptor.TYPE_INT64,
    "uint32": FieldDescriptor.TYPE_UINT32,
    "uint64": FieldDescriptor.TYPE_UINT64,
    "sint32": FieldDescriptor.TYPE_SINT32,
    "sint64": FieldDescriptor.TYPE_SINT64,
    "fixed32": FieldDescriptor.TYPE_FIXED32,
    "fixed64": FieldDescriptor.TYPE_FIXED64,
    "sfixed32": FieldDescriptor.TYPE_SFIXED32,
    "sfixed64": FieldDescriptor.TYPE_SFIXED64,
}


def _value_checks(fd: FieldDescriptor, type_case: str, rules: Message) -> list[ValueCheck]:
    """The checks of one value (a singular field or a list item) under `<type_case>` rules."""
    if type_case == "string":
        _expect_type(fd, type_case, FieldDescriptor.TYPE_STRING)
        return _string_checks(fd, rules)
    if type_case in _INT_TYPES:
        _expect_type(fd, type_case, _INT_TYPES[type_case])
        return _int_checks(fd, type_case, rules)
    if type_case == "bool":
        _expect_type(fd, type_case, FieldDescriptor.TYPE_BOOL)
        return _scalar_set_checks(fd, type_case, rules)
    if type_case == "enum":
        _expect_type(fd, type_case, FieldDescriptor.TYPE_ENUM)
        return _int_checks(fd, type_case, rules)
    # float/double (NaN, formatting), bytes, duration, timestamp, field_mask, any: protovalidate's job.
    raise Unsupported(f"{fd.full_name}: {type_case} rules are not implemented by the fast path")


def _expect_type(fd: FieldDescriptor, type_case: str, expected: int) -> None:
    # A wrapper (google.protobuf.StringValue ...) or a mismatch (a CompilationError in protovalidate)
    # is left to protovalidate.
    if fd.type != expected:
        raise Unsupported(f"{fd.full_name}: {type_case} rules on a field of type {fd.type}")


def _format_list(values: Sequence[Any]) -> str:
    """A list as CEL's format `%s` prints it: strings unquoted, bools lower case."""
    return "[" + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values) + "]"


def _set_rule(
    fd: FieldDescriptor, type_case: str, rule_field: FieldDescriptor, value: Any, *, quote: str = ""
) -> ValueCheck | None:
    """const / in / not_in / example, shared by every scalar rule type that has them."""
    name = rule_field.name
    _expect_ids(fd, rule_field, [f"{type_case}.{name}"])
    if name == "const":
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        return _bound(lambda v: v != value, f"must equal {quote}{shown}{quote}")
    if name == "in":
        allowed = frozenset(value)
        return _bound(lambda v: v not in allowed, f"must be in list {_format_list(value)}")
    if name == "not_in":
        banned = frozenset(value)
        return _bound(lambda v: v in banned, f"must not be in list {_format_list(value)}")
    if name == "example":
        return None  # documentation: its rule is `true`
    raise Unsupported(f"{fd.full_name}: rule {rule_field.full_name} is not implemented by the fast path")


_SET_RULES = {"const", "in", "not_in", "example"}


def _scalar_set_checks(fd: FieldDescriptor, type_case: str, rules: Message) -> list[ValueCheck]:
    checks: list[ValueCheck] = []
    for rule_field, value in rules.ListFields():
        if rule_field.is_extension:
            raise Unsupported(f"{fd.full_name}: predefined rule {rule_field.full_name}")
        check = _set_rule(fd, type_case, rule_field, value)
        if check is not None:
            checks.append(check)
    return checks


def _int_checks(fd: FieldDescriptor, type_case: str, rules: Any) -> list[ValueCheck]:
    """Integer (and enum) rules: ranges, const, in, not_in."""
    checks: list[ValueCheck] = []
    ranged = type_case != "enum"
    has_lt = ranged and rules.HasField("lt")
    has_lte = ranged and rules.HasField("lte")
    has_lower = ranged and (rules.HasField("gt") or rules.HasField("gte"))
    for rule_field, value in rules.ListFields():
        name = rule_field.name
        if rule_field.is_extension:
            raise Unsupported(f"{fd.full_name}: predefined rule {rule_field.full_name}")
        if name in _SET_RULES:
            check = _set_rule(fd, type_case, rule_field, value)
            if check is not None:
                checks.append(check)
        elif name == "defined_only" and type_case == "enum":
            _expect_ids(fd, rule_field, [])
            continue  # checked by _singular_check after the other rules, as protovalidate does
        elif name in ("lt", "lte") and ranged:
            _expect_ids(fd, rule_field, [f"{type_case}.{name}"])
            if has_lower:
                continue  # the gt/gte rule reports the whole range
            if name == "lt":
                checks.append(_against(operator.ge, value, f"must be less than {value}"))
            else:
                checks.append(_against(operator.gt, value, f"must be less than or equal to {value}"))
        elif name in ("gt", "gte") and ranged:
            suffixes = ("", "_lt", "_lt_exclusive", "_lte", "_lte_exclusive")
            _expect_ids(fd, rule_field, [f"{type_case}.{name}{suffix}" for suffix in suffixes])
            high_lt = rules.lt if has_lt else None
            high_lte = rules.lte if has_lte else None
            checks.extend(_lower_bound_checks(strict=name == "gt", low=value, lt=high_lt, lte=high_lte))
        else:
            raise Unsupported(f"{fd.full_name}: rule {rule_field.full_name} is not implemented by the fast path")
    return checks


def _lower_bound_checks(*, strict: bool, low: int, lt: int | None, lte: int | None) -> list[ValueCheck]:
    """The five rules validate.proto attaches to gt (or gte), one check each where it can fire."""
    word = "greater than" if strict else "greater than or equal to"

    def below(v: int) -> bool:
        return v <= low if strict else v < low

    checks: list[ValueCheck] = []
    if lt is None and lte is None:
        checks.append(_bound(below, f"must be {word} {low}"))
    if lt is not None:
        high = lt
        if high >= low:
            checks.append(_bound(lambda v: v >= high or below(v), f"must be {word} {low} and less than {high}"))
        else:
            checks.append(_bound(lambda v: high <= v and below(v), f"must be {word} {low} or less than {high}"))
    if lte is not None:
        top = lte
        if top >= low:
            checks.append(
                _bound(lambda v: v > top or below(v), f"must be {word} {low} and less than or equal to {top}")
            )
        else:
            checks.append(
                _bound(lambda v: top < v and below(v), f"must be {word} {low} or less than or equal to {top}")
            )
    return checks


_UUID = re2.compile("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TUUID = re2.compile("^[0-9a-fA-F]{32}$")


def _is_uuid(value: str) -> bool:
    return _UUID.search(value) is not None


def _is_tuuid(value: str) -> bool:
    return _TUUID.search(value) is not None


@functools.cache
def _cel_formats() -> tuple[ModuleType, ModuleType]:
    """protovalidate's functions of the well-known formats and CEL's value types, imported when a
    plan with such a format is compiled: importing protovalidate builds its CEL parser (about half a
    second of a core at start-up), which a service whose contracts use no such format never needs."""
    from celpy import celtypes
    from protovalidate.internal import extra_func

    return extra_func, celtypes


# protovalidate's own implementations of the well-known formats, so that the verdicts are identical.
def _is_email(value: str) -> bool:
    extra_func, celtypes = _cel_formats()
    return bool(extra_func.cel_is_email(celtypes.StringType(value)))


def _is_uri(value: str) -> bool:
    extra_func, celtypes = _cel_formats()
    return bool(extra_func.cel_is_uri(celtypes.StringType(value)))


def _is_hostname(value: str) -> bool:
    extra_func, celtypes = _cel_formats()
    return bool(extra_func.cel_is_hostname(celtypes.StringType(value)))


# Format rules: a predicate, the message of a bad value and the noun of the empty-value message.
_FORMATS: dict[str, tuple[Callable[[str], bool], str, str]] = {
    "uuid": (_is_uuid, "must be a valid UUID", "a valid UUID"),
    "tuuid": (_is_tuuid, "must be a valid trimmed UUID", "a valid trimmed UUID"),
    "email": (_is_email, "must be a valid email address", "a valid email address"),
    "uri": (_is_uri, "must be a valid URI", "a valid URI"),
    "hostname": (_is_hostname, "must be a valid hostname", "a valid hostname"),
}
_CEL_FORMATS = {"email", "uri", "hostname"}


def _format_checks(predicate: Callable[[str], bool], bad: str, noun: str) -> list[ValueCheck]:
    def well_formed(value: str) -> str | None:
        return bad if value != "" and not predicate(value) else None

    def not_empty(value: str) -> str | None:
        return f"value is empty, which is not {noun}" if value == "" else None

    return [well_formed, not_empty]


def _string_checks(fd: FieldDescriptor, rules: Any) -> list[ValueCheck]:
    checks: list[ValueCheck] = []
    for rule_field, value in rules.ListFields():
        name = rule_field.name
        if rule_field.is_extension:
            raise Unsupported(f"{fd.full_name}: predefined rule {rule_field.full_name}")
        if name in _SET_RULES:
            check = _set_rule(fd, "string", rule_field, value, quote="`")
            if check is not None:
                checks.append(check)
        elif name in _FORMATS:
            _expect_ids(fd, rule_field, [f"string.{name}", f"string.{name}_empty"])
            if value:
                if name in _CEL_FORMATS:
                    _cel_formats()  # imported with the plan (at start-up: validation.prepare), not by a request
                checks.extend(_format_checks(*_FORMATS[name]))
        elif name in _LENGTHS:
            _expect_ids(fd, rule_field, [f"string.{name}"])
            fails, template = _LENGTHS[name]
            checks.append(_against(fails, value, template.format(value)))
        elif name == "pattern":
            _expect_ids(fd, rule_field, ["string.pattern"])
            try:
                compiled = re2.compile(value)
            except re2.error as exc:
                raise Unsupported(f"{fd.full_name}: pattern {value!r} does not compile: {exc}") from exc
            checks.append(_against(_no_match, compiled, f"does not match regex pattern `{value}`"))
        elif name in _AFFIXES:
            _expect_ids(fd, rule_field, [f"string.{name}"])
            fails_affix, template = _AFFIXES[name]
            checks.append(_against(fails_affix, value, template.format(value)))
        else:
            raise Unsupported(f"{fd.full_name}: rule {rule_field.full_name} is not implemented by the fast path")
    return checks


# Lengths in code points, as CEL's size() counts them (and Python's len()).
_LENGTHS: dict[str, tuple[Callable[[str, int], bool], str]] = {
    "len": (lambda v, n: len(v) != n, "must be {} characters"),
    "min_len": (_size_below, "must be at least {} characters"),
    "max_len": (_size_above, "must be at most {} characters"),
}

_AFFIXES: dict[str, tuple[Callable[[str, str], bool], str]] = {
    "prefix": (lambda v, a: not v.startswith(a), "does not have prefix `{}`"),
    "suffix": (lambda v, a: not v.endswith(a), "does not have suffix `{}`"),
    "contains": (lambda v, a: a not in v, "does not contain substring `{}`"),
}
