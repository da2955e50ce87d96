"""Hypothesis strategies for protobuf messages, built from their descriptors alone.

Nothing here is written per message type: `MessageStrategies` reads a message's DESCRIPTOR
(field types, labels, oneofs, maps, well-known types) and its `buf.validate` field rules, and
offers three kinds of message:

- `wild(d)`: anything the wire format can carry for that type. Every scalar type with its
  boundary values (empty, huge and odd Unicode strings, NUL, zero/negative/extreme integers,
  NaN and infinities), enums with unknown numbers, nested messages (depth-bounded), repeated
  fields of bounded size, oneofs, maps, Timestamps and Durations out of their legal range,
  FieldMasks with unknown paths. The bounds of the field's own rules are among the boundary
  values (a `max_len: 50` string is tried at 50 and 51 characters).
- `valid(d)`: messages that satisfy the field rules, so a request gets past validation into
  the use case. `Hints` steer chosen fields towards values the system knows (the id of a
  movie that exists, a seat of the screening's map), by full field name or by field name.
- `nearly_valid(d)`: a valid message with exactly one field changed: set to a wild value,
  cleared, (for a repeated field) one element replaced or one added, or (for a string) one
  odd character slipped into its valid value: NUL, an escape, a bidi mark, a lone combining
  mark, which most rules let through to the use case and the stores.

`requests(d)` mixes the three (nearly-valid weighted highest), which is what the fuzz tests
send. Rules the valid mode does not understand (message-level CEL, for one) are not modelled:
a "valid" message may then still be refused, which only makes it one more bad input.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from buf.validate import validate_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

if TYPE_CHECKING:
    from google._upb import _message as upb

FD = FieldDescriptor
# What descriptors are typed as: the Python classes, or the upb ones they are at run time.
AnyDescriptor: TypeAlias = "Descriptor | upb.Descriptor"
AnyField: TypeAlias = "FieldDescriptor | upb.FieldDescriptor"

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

_INT_RANGES: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: INT32,
    FD.TYPE_SINT32: INT32,
    FD.TYPE_SFIXED32: INT32,
    FD.TYPE_INT64: INT64,
    FD.TYPE_SINT64: INT64,
    FD.TYPE_SFIXED64: INT64,
    FD.TYPE_UINT32: UINT32,
    FD.TYPE_FIXED32: UINT32,
    FD.TYPE_UINT64: UINT64,
    FD.TYPE_FIXED64: UINT64,
}
# The buf.validate rule message of each scalar type (FieldRules.<name>).
_RULE_NAMES: dict[int, str] = {
    FD.TYPE_INT32: "int32",
    FD.TYPE_SINT32: "sint32",
    FD.TYPE_SFIXED32: "sfixed32",
    FD.TYPE_INT64: "int64",
    FD.TYPE_SINT64: "sint64",
    FD.TYPE_SFIXED64: "sfixed64",
    FD.TYPE_UINT32: "uint32",
    FD.TYPE_FIXED32: "fixed32",
    FD.TYPE_UINT64: "uint64",
    FD.TYPE_FIXED64: "fixed64",
    FD.TYPE_FLOAT: "float",
    FD.TYPE_DOUBLE: "double",
    FD.TYPE_STRING: "string",
    FD.TYPE_BYTES: "bytes",
    FD.TYPE_BOOL: "bool",
    FD.TYPE_ENUM: "enum",
}

# Timestamp and Duration: the range google.protobuf documents as legal (0001-01-01 .. 9999-12-31,
# +-10,000 years), whose edges and just-beyond are what a parser gets wrong.
TIMESTAMP_MIN_S = -62_135_596_800
TIMESTAMP_MAX_S = 253_402_300_799
DURATION_MAX_S = 315_576_000_000
NANOS_PER_S = 1_000_000_000

# Strings that have broken servers before: control characters, odd code points (no surrogates:
# a protobuf string must be valid UTF-8), bidi and zero-width marks, combining sequences, store
# operators and paths, format strings, numbers that overflow, near-miss UUIDs and dates.
ODD_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\r\n",
    "\x7f\x1b[31m",
    "\u0085\u2028\u2029",
    "\u00a0",
    "\u200b\u200d\ufeff",
    "\u202etxet\u202c",
    "e\u0301\u0302\u0303",
    "\ufffd\ufffe\uffff",
    "\U0010ffff",
    "\U000e0001\U000f0000",
    "\U0001f3ac\U0001f37f",
    "\u4e2d\u6587",
    "\u0130\u0131\u00df",
    "$where",
    '{"$gt": ""}',
    "a.b.c",
    "$",
    "'; DROP TABLE reservations; --",
    "%s%n%x{0}{}",
    "../../../etc/passwd",
    "null",
    "NaN",
    "-0",
    "1e309",
    "9" * 40,
    "00000000-0000-0000-0000-000000000000",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    "{00000000-0000-0000-0000-000000000000}",
    "00000000000000000000000000000000",
    "0000-00-00",
    "9999-12-31",
    "2026-02-30",
    "A0",
    "Z99",
    "AA1",
    "==",
    "AAAA",
    "eyJhbGciOiJub25lIn0.e30.",
)
# Huge strings: past every max_len of the contracts and past common buffer sizes; at most 1 MiB
# of UTF-8 (262,145 four-byte characters), so that one fits the 4 MiB gRPC message limit (a
# bigger message is refused by grpcio itself, which tests/fuzz/checks.py accepts).
HUGE_LENGTHS: tuple[int, ...] = (257, 1025, 2001, 5001, 65_537, 262_145)

MAX_LIST = 6  # elements of a wild repeated field (boundary sizes from the rules come on top)
MAX_MAP = 4
DEFAULT_MAX_DEPTH = 4


def _text() -> SearchStrategy[str]:
    # codec="utf-8" leaves surrogates out: what a protobuf string can hold.
    return st.text(st.characters(codec="utf-8"), max_size=40)


def _huge_text() -> SearchStrategy[str]:
    return st.tuples(st.sampled_from(HUGE_LENGTHS), st.sampled_from(("x", "\u00e9", "\U0001f3ac", "\x00"))).map(
        lambda pair: pair[1] * pair[0]
    )


def field_rules(fd: AnyField) -> validate_pb2.FieldRules | None:
    """The buf.validate rules of a field, or None when it has none."""
    options = fd.GetOptions()
    if options.HasExtension(validate_pb2.field):
        rules: validate_pb2.FieldRules = options.Extensions[validate_pb2.field]
        return rules
    return None


def _typed_rules(rules: validate_pb2.FieldRules | None, fd: AnyField) -> Message | None:
    """The rules for the field's scalar type (StringRules, Int32Rules ...), when those are set."""
    if rules is None:
        return None
    name = _RULE_NAMES.get(fd.type)
    if name is None or rules.WhichOneof("type") != name:
        return None
    typed: Message = getattr(rules, str(name))
    return typed


def _rule(typed: Message | None, name: str) -> Any:
    """One rule of a typed rule message (`max_len`, `gte`, `in` ...), or None when it is not set
    (or that rule type has no such rule)."""
    if typed is None:
        return None
    rule_fd = typed.DESCRIPTOR.fields_by_name.get(name)
    if rule_fd is None:
        return None
    if rule_fd.is_repeated:
        return list(getattr(typed, name)) or None
    if rule_fd.has_presence and not typed.HasField(name):
        return None
    return getattr(typed, name)


def _int_bounds(typed: Message | None, lo: int, hi: int) -> tuple[int, int]:
    """The integer range the rules allow, within the type's range."""
    if (gt := _rule(typed, "gt")) is not None:
        lo = max(lo, int(gt) + 1)
    if (gte := _rule(typed, "gte")) is not None:
        lo = max(lo, int(gte))
    if (lt := _rule(typed, "lt")) is not None:
        hi = min(hi, int(lt) - 1)
    if (lte := _rule(typed, "lte")) is not None:
        hi = min(hi, int(lte))
    return lo, hi


def _is_map(fd: AnyField) -> bool:
    return fd.message_type is not None and bool(fd.message_type.GetOptions().map_entry)


def _is_repeated(fd: AnyField) -> bool:
    return bool(fd.is_repeated)


def _looks_like_id(fd: AnyField) -> bool:
    """`id`, `movie_id`, ...: by API naming (AIP-122) a resource id, a UUID in this system."""
    return fd.type == FD.TYPE_STRING and (fd.name == "id" or fd.name.endswith("_id"))


@dataclass(frozen=True)
class Hints:
    """Values the valid mode prefers for some fields: keyed by full field name
    (`cinema.payment.v1.Card.number`) or by field name (`movie_id`). For a repeated field the
    strategy draws the whole list."""

    by_field: Mapping[str, SearchStrategy[Any]] = field(default_factory=dict)

    def for_field(self, fd: AnyField) -> SearchStrategy[Any] | None:
        by_full_name = self.by_field.get(fd.full_name)
        return by_full_name if by_full_name is not None else self.by_field.get(fd.name)


class MessageStrategies:
    """Builds (and caches) the strategies of message types from their descriptors."""

    def __init__(self, hints: Hints | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.hints = hints or Hints()
        self.max_depth = max_depth
        self._wild: dict[tuple[str, int], SearchStrategy[Message]] = {}
        self._valid: dict[tuple[str, int], SearchStrategy[Message]] = {}

    # ----------------------------------------------------------------- public API

    def wild(self, descriptor: AnyDescriptor, depth: int = 0) -> SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._wild:
            self._wild[key] = self._build(descriptor, depth, valid=False)
        return self._wild[key]

    def valid(self, descriptor: AnyDescriptor, depth: int = 0) -> SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._valid:
            self._valid[key] = self._build(descriptor, depth, valid=True)
        return self._valid[key]

    def nearly_valid(self, descriptor: AnyDescriptor) -> SearchStrategy[Message]:
        return _nearly_valid(self, descriptor)

    def requests(self, descriptor: AnyDescriptor) -> SearchStrategy[Message]:
        """What the fuzz tests send: two in five nearly-valid, two valid (they reach the use
        cases, where the state of the system makes them fail or not), one wild."""
        return st.one_of(
            self.nearly_valid(descriptor),
            self.valid(descriptor),
            self.wild(descriptor),
            self.nearly_valid(descriptor),
            self.valid(descriptor),
        )

    def wild_field(self, fd: AnyField, depth: int, siblings: AnyDescriptor | None = None) -> SearchStrategy[Any]:
        """A wild value for a whole field: a list for a repeated field, a dict for a map."""
        if _is_map(fd):
            entry = fd.message_type
            assert entry is not None
            keys = self._wild_single(entry.fields_by_name["key"], depth, None)
            values = self._wild_single(entry.fields_by_name["value"], depth + 1, None)
            return st.dictionaries(keys, values, max_size=MAX_MAP)
        single = self._wild_single(fd, depth + 1, siblings)
        if not _is_repeated(fd):
            return single
        lists = st.lists(single, max_size=MAX_LIST)
        rules = field_rules(fd)
        if rules is not None and rules.WhichOneof("type") == "repeated" and rules.repeated.HasField("max_items"):
            # One past the limit, of well-formed items: copies of one (a long list of distinct draws
            # would exhaust Hypothesis's budget and add nothing).
            past = int(rules.repeated.max_items) + 1
            parent = siblings if siblings is not None else fd.containing_type
            item = self._valid_single(fd, depth + 1, _item_rules(fd), parent)
            lists = st.one_of(lists, item.map(lambda v: [v] * past))
        return lists

    def wild_element(self, fd: AnyField, depth: int) -> SearchStrategy[Any]:
        return self._wild_single(fd, depth + 1, None)

    # ----------------------------------------------------------------- building

    def _build(self, descriptor: AnyDescriptor, depth: int, *, valid: bool) -> SearchStrategy[Message]:
        special = _WELL_KNOWN.get(descriptor.full_name)
        if special is not None:
            return special(valid)
        cls = message_factory.GetMessageClass(cast("Descriptor", descriptor))
        plain: list[AnyField] = []
        oneofs: list[list[AnyField]] = []
        for oneof in descriptor.oneofs:
            if getattr(oneof, "is_synthetic", False):  # proto3 `optional`: an ordinary field with presence
                continue
            oneofs.append(list(oneof.fields))
        in_oneof = {fd.full_name for group in oneofs for fd in group}
        plain = [fd for fd in descriptor.fields if fd.full_name not in in_oneof]

        if depth >= self.max_depth:
            # Deep enough: scalars only, sub-messages left unset (recursive types end here).
            plain = [fd for fd in plain if fd.message_type is None or (valid and _is_required(fd))]
            oneofs = [[fd for fd in group if fd.message_type is None] for group in oneofs]

        field_strategies: list[tuple[AnyField, SearchStrategy[Any], bool]] = []
        for fd in plain:
            if valid:
                field_strategies.append((fd, self._valid_field(fd, depth, descriptor), _must_set_when_valid(fd)))
            else:
                field_strategies.append((fd, self.wild_field(fd, depth, descriptor), False))
        oneof_strategies: list[SearchStrategy[tuple[AnyField, Any] | None]] = []
        for group in oneofs:
            choices: list[SearchStrategy[tuple[AnyField, Any] | None]] = [st.none()]
            for member in group:
                value = self._valid_field(member, depth, descriptor) if valid else self.wild_field(member, depth)
                choices.append(st.tuples(st.just(member), value))
            oneof_strategies.append(st.one_of(choices))

        if not field_strategies and not oneof_strategies:
            return st.builds(cls)  # nothing to draw (an empty message, or one cut by the depth bound)

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = cls()
            for fd, strategy, always in field_strategies:
                if always or draw(st.booleans()):
                    assign(message, fd, draw(strategy))
            for oneof_strategy in oneof_strategies:
                chosen = draw(oneof_strategy)
                if chosen is not None:
                    assign(message, chosen[0], chosen[1])
            return message

        return build()

    def _wild_single(self, fd: AnyField, depth: int, siblings: AnyDescriptor | None) -> SearchStrategy[Any]:
        """A wild value of one element of the field (the field itself when singular)."""
        if fd.message_type is not None:
            if fd.message_type.full_name == "google.protobuf.FieldMask":
                return _field_masks(_mask_candidates(fd, siblings), valid=False)
            return self.wild(fd.message_type, depth)
        typed = _typed_rules(_item_rules(fd), fd)
        if fd.type in _INT_RANGES:
            return _wild_int(*_INT_RANGES[fd.type], typed)
        if fd.type == FD.TYPE_BOOL:
            return st.booleans()
        if fd.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            width: Literal[32, 64] = 32 if fd.type == FD.TYPE_FLOAT else 64
            return st.one_of(st.sampled_from((0.0, -0.0, math.nan, math.inf, -math.inf)), st.floats(width=width))
        if fd.type == FD.TYPE_STRING:
            return _wild_string(typed)
        if fd.type == FD.TYPE_BYTES:
            return st.one_of(st.binary(max_size=64), st.sampled_from((b"", b"\x00", b"\xff" * 16)))
        if fd.type == FD.TYPE_ENUM:
            enum_type = fd.enum_type
            assert enum_type is not None
            known = sorted(enum_type.values_by_number)
            # proto3 enums are open: any int32 travels on the wire, and the handler sees it.
            return st.one_of(st.sampled_from(known), st.sampled_from((-1, max(known) + 1, *INT32)), st.integers(*INT32))
        raise AssertionError(f"unhandled field type {fd.type} of {fd.full_name}")

    def _valid_field(self, fd: AnyField, depth: int, parent: AnyDescriptor) -> SearchStrategy[Any]:
        hinted = self.hints.for_field(fd)
        if hinted is not None:
            return hinted
        rules = field_rules(fd)
        if _is_map(fd):
            entry = fd.message_type
            assert entry is not None
            key_fd, value_fd = entry.fields_by_name["key"], entry.fields_by_name["value"]
            min_pairs, max_pairs = 0, MAX_MAP
            key_rules = value_rules = None
            if rules is not None and rules.WhichOneof("type") == "map":
                min_pairs = int(rules.map.min_pairs)
                max_pairs = min(max(min_pairs, int(rules.map.max_pairs or MAX_MAP)), min_pairs + MAX_MAP)
                key_rules = rules.map.keys if rules.map.HasField("keys") else None
                value_rules = rules.map.values if rules.map.HasField("values") else None
            return st.dictionaries(
                self._valid_single(key_fd, depth, key_rules, parent),
                self._valid_single(value_fd, depth + 1, value_rules, parent),
                min_size=min_pairs,
                max_size=max_pairs,
            )
        if not _is_repeated(fd):
            return self._valid_single(fd, depth + 1, rules, parent)
        min_items, max_items, unique = 0, 4, False
        item_rules = None
        if rules is not None and rules.WhichOneof("type") == "repeated":
            r = rules.repeated
            min_items = int(r.min_items)
            max_items = min(int(r.max_items) if r.HasField("max_items") else min_items + 4, min_items + 4)
            unique = bool(r.unique)
            item_rules = r.items if r.HasField("items") else None
        item = self._valid_single(fd, depth + 1, item_rules, parent)
        if unique:
            return st.lists(item, min_size=min_items, max_size=max_items, unique_by=_unique_key)
        return st.lists(item, min_size=min_items, max_size=max_items)

    def _valid_single(
        self, fd: AnyField, depth: int, rules: validate_pb2.FieldRules | None, parent: AnyDescriptor | None
    ) -> SearchStrategy[Any]:
        if fd.message_type is not None:
            if fd.message_type.full_name == "google.protobuf.FieldMask":
                allowed = _mask_in(rules)
                return _field_masks(allowed or _mask_candidates(fd, parent), valid=True)
            return self.valid(fd.message_type, depth)
        typed = _typed_rules(rules, fd)
        if (allowed := _rule(typed, "in")) is not None:
            return st.sampled_from(allowed)
        if (const := _rule(typed, "const")) is not None:
            return st.just(const)
        if fd.type in _INT_RANGES:
            if typed is None:
                return st.integers(0, 1000)
            lo, hi = _int_bounds(typed, *_INT_RANGES[fd.type])
            return st.integers(lo, hi)
        if fd.type == FD.TYPE_BOOL:
            return st.booleans()
        if fd.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            return st.floats(0, 1000, allow_nan=False, allow_infinity=False, width=32)
        if fd.type == FD.TYPE_STRING:
            if typed is None and _looks_like_id(fd):
                return st.uuids().map(str)
            return _valid_string(typed)
        if fd.type == FD.TYPE_BYTES:
            return st.binary(max_size=16)
        if fd.type == FD.TYPE_ENUM:
            enum_type = fd.enum_type
            assert enum_type is not None
            defined = sorted(n for n in enum_type.values_by_number if n != 0) or [0]
            return st.sampled_from(defined)
        raise AssertionError(f"unhandled field type {fd.type} of {fd.full_name}")


def _unique_key(value: Any) -> Any:
    return value.SerializeToString(deterministic=True) if isinstance(value, Message) else value


def _item_rules(fd: AnyField) -> validate_pb2.FieldRules | None:
    """The rules of one element: the field's own, or its `repeated.items` for a repeated field."""
    rules = field_rules(fd)
    if rules is None:
        return None
    if _is_repeated(fd):
        if rules.WhichOneof("type") == "repeated" and rules.repeated.HasField("items"):
            return rules.repeated.items
        return None
    return rules


def _is_required(fd: AnyField) -> bool:
    rules = field_rules(fd)
    return rules is not None and bool(rules.required)


def _must_set_when_valid(fd: AnyField) -> bool:
    """Whether the valid mode always sets the field: when it is required, when it is a message
    (CEL rules test presence), or when it has rules that an empty value may break."""
    if fd.message_type is not None and not _is_repeated(fd):
        return True
    rules = field_rules(fd)
    if rules is None:
        return _looks_like_id(fd)
    if rules.required:
        return True
    return rules.ignore != validate_pb2.IGNORE_IF_ZERO_VALUE and rules.WhichOneof("type") is not None


def _wild_int(lo: int, hi: int, typed: Message | None) -> SearchStrategy[int]:
    edges = {0, 1, -1, lo, lo + 1, hi, hi - 1, 2**31 - 1, -(2**31), 2**53 + 1}
    for name in ("gt", "gte", "lt", "lte", "const"):
        if (bound := _rule(typed, name)) is not None:
            edges |= {int(bound) - 1, int(bound), int(bound) + 1}
    return st.one_of(st.sampled_from(sorted(v for v in edges if lo <= v <= hi)), st.integers(lo, hi))


def _wild_string(typed: Message | None) -> SearchStrategy[str]:
    parts: list[SearchStrategy[str]] = [st.sampled_from(ODD_STRINGS), _text(), _huge_text()]
    if typed is not None:
        lengths: set[int] = set()
        for name in ("min_len", "max_len", "len"):
            if (n := _rule(typed, name)) is not None:
                lengths |= {int(n) - 1, int(n), int(n) + 1}
        if lengths:
            parts.append(
                st.tuples(st.sampled_from(sorted(n for n in lengths if n >= 0)), st.sampled_from(("a", "\u00e9"))).map(
                    lambda pair: pair[1] * pair[0]
                )
            )
        # The well-formed value, one character off: near-misses get furthest into a parser.
        parts.append(_valid_string(typed).flatmap(_near_misses))
    return st.one_of(parts)


def _near_misses(valid: str) -> SearchStrategy[str]:
    candidates = {
        valid + "\x00",
        valid + "\n",
        " " + valid,
        valid.upper(),
        valid[:-1],
        valid + valid[-1:],
        valid.replace("-", ""),
        valid.replace("-", "\u2010"),
    }
    return st.sampled_from(sorted(candidates))


_VALID_ALPHABET = string.ascii_letters + string.digits + " -'"


def _valid_string(typed: Message | None) -> SearchStrategy[str]:
    if typed is None:
        return st.text(_VALID_ALPHABET, max_size=20)
    well_known = typed.WhichOneof("well_known")
    if well_known == "uuid":
        return st.uuids().map(str)
    if well_known == "email":
        return st.from_regex(r"[a-z]{1,12}@example\.(test|org)", fullmatch=True)
    if well_known in ("uri", "uri_ref"):
        return st.from_regex(r"https://example\.test/[a-z0-9]{0,20}", fullmatch=True)
    if well_known == "hostname":
        return st.from_regex(r"[a-z]{1,10}\.test", fullmatch=True)
    min_len = int(_rule(typed, "min_len") or 0)
    max_len = int(_rule(typed, "max_len") or min_len + 30)
    if (exact := _rule(typed, "len")) is not None:
        min_len = max_len = int(exact)
    max_len = min(max_len, min_len + 30)
    pattern = str(_rule(typed, "pattern") or "")
    if pattern:
        try:
            re.compile(pattern)
        except re.error:
            pattern = ""
    if pattern:
        return st.from_regex(pattern, fullmatch=True).filter(lambda s: min_len <= len(s) <= max_len)
    prefix, suffix = str(_rule(typed, "prefix") or ""), str(_rule(typed, "suffix") or "")
    core = max(0, min_len - len(prefix) - len(suffix))
    return st.text(_VALID_ALPHABET, min_size=core, max_size=max(core, max_len - len(prefix) - len(suffix))).map(
        lambda s: prefix + s + suffix
    )


# ------------------------------------------------------------------ well-known types


def _timestamps(valid: bool) -> SearchStrategy[Message]:
    from google.protobuf import timestamp_pb2

    if valid:
        moments = st.datetimes(min_value=datetime(2027, 1, 1), max_value=datetime(2030, 12, 31))

        def at(moment: datetime) -> Message:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(moment.replace(tzinfo=UTC))
            return stamp

        return moments.map(at)
    seconds = st.one_of(
        st.sampled_from(
            (0, -1, TIMESTAMP_MIN_S, TIMESTAMP_MIN_S - 1, TIMESTAMP_MAX_S, TIMESTAMP_MAX_S + 1, *INT64, 2**53)
        ),
        st.integers(TIMESTAMP_MIN_S, TIMESTAMP_MAX_S),
        st.integers(*INT64),
    )
    nanos = st.one_of(st.sampled_from((0, 999_999_999, NANOS_PER_S, -1, *INT32)), st.integers(*INT32))
    return st.builds(lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n), seconds, nanos)


def _durations(valid: bool) -> SearchStrategy[Message]:
    from google.protobuf import duration_pb2

    if valid:
        return st.integers(0, 86_400).map(lambda s: duration_pb2.Duration(seconds=s))
    seconds = st.one_of(
        st.sampled_from((0, -1, DURATION_MAX_S, DURATION_MAX_S + 1, -DURATION_MAX_S - 1, *INT64)),
        st.integers(*INT64),
    )
    # A negative duration with positive nanos (or the reverse) is malformed too.
    nanos = st.one_of(st.sampled_from((0, 1, -1, 999_999_999, NANOS_PER_S, *INT32)), st.integers(*INT32))
    return st.builds(lambda s, n: duration_pb2.Duration(seconds=s, nanos=n), seconds, nanos)


_WELL_KNOWN: dict[str, Callable[[bool], SearchStrategy[Message]]] = {
    "google.protobuf.Timestamp": _timestamps,
    "google.protobuf.Duration": _durations,
}

_ODD_PATHS: tuple[str, ...] = (
    "",
    "*",
    "id",
    "a..b",
    ".x",
    "x.",
    "Title",
    "review_count",
    "movie.title",
    "$set",
    "\x00",
)


def _mask_in(rules: validate_pb2.FieldRules | None) -> list[str]:
    if rules is not None and rules.WhichOneof("type") == "field_mask":
        return list(getattr(rules.field_mask, "in"))
    return []


def _mask_candidates(fd: AnyField, parent: AnyDescriptor | None) -> list[str]:
    """Paths a FieldMask of `fd` plausibly names: its `in` rule, else the fields of the
    messages beside it (UpdateMovieRequest.update_mask names fields of `movie`)."""
    allowed = _mask_in(field_rules(fd))
    if allowed:
        return allowed
    names: list[str] = []
    if parent is not None:
        for sibling in parent.fields:
            if sibling.message_type is not None and sibling is not fd:
                names.extend(f.name for f in sibling.message_type.fields)
    return names or ["name"]


def _field_masks(candidates: Sequence[str], *, valid: bool) -> SearchStrategy[Message]:
    from google.protobuf import field_mask_pb2

    if valid:
        paths = st.lists(st.sampled_from(list(candidates)), min_size=1, max_size=len(candidates), unique=True)
    else:
        paths = st.lists(
            st.one_of(st.sampled_from(list(candidates)), st.sampled_from(_ODD_PATHS), _text()), max_size=MAX_LIST
        )
    return paths.map(lambda p: field_mask_pb2.FieldMask(paths=p))


# ------------------------------------------------------------------ assigning and mutating


def assign(message: Message, fd: AnyField, value: Any) -> None:
    """Set one field of `message` to `value` (a list for repeated, a dict for a map)."""
    name = fd.name
    if _is_map(fd):
        target = getattr(message, name)
        target.clear()
        entry = fd.message_type
        assert entry is not None
        for key, item in value.items():
            if entry.fields_by_name["value"].message_type is not None:
                target[key].CopyFrom(item)
            else:
                target[key] = item
        return
    if _is_repeated(fd):
        message.ClearField(name)
        target = getattr(message, name)
        if fd.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
        return
    if fd.message_type is not None:
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


def mutation_sites(message: Message) -> list[tuple[Message, AnyField]]:
    """Every (message, field) pair inside `message` that one mutation may change: all fields of
    the message and of the sub-messages that are set, recursively."""
    sites: list[tuple[Message, AnyField]] = []
    for fd in message.DESCRIPTOR.fields:
        sites.append((message, fd))
        if fd.message_type is None or _is_map(fd) or fd.message_type.full_name in _WELL_KNOWN:
            continue
        if _is_repeated(fd):
            for item in getattr(message, fd.name):
                sites.extend(mutation_sites(item))
        elif message.HasField(fd.name):
            sites.extend(mutation_sites(getattr(message, fd.name)))
    return sites


# Characters slipped into an otherwise valid string: PostgreSQL refuses NUL in text, terminals
# obey escapes, bidi marks reorder what a person reads, a lone combining mark has no base.
TAINTS: tuple[str, ...] = ("\x00", "\x1b", "\x7f", "\u202e", "\u0301", "\ufeff", "\U0010ffff")


def _slip(value: str, odd: str, at: int) -> str:
    return value[:at] + odd + value[at:]


def _nearly_valid(builder: MessageStrategies, descriptor: AnyDescriptor) -> SearchStrategy[Message]:
    @st.composite
    def mutate(draw: st.DrawFn) -> Message:
        message = draw(builder.valid(descriptor))
        sites = mutation_sites(message)
        if not sites:
            return message
        target, fd = draw(st.sampled_from(sites))
        how = draw(st.sampled_from(("wild", "wild", "clear", "element", "taint")))
        if how == "clear":
            target.ClearField(fd.name)
        elif how == "taint" and fd.type == FD.TYPE_STRING and not _is_map(fd):
            odd = draw(st.sampled_from(TAINTS))
            if _is_repeated(fd):
                items = list(getattr(target, fd.name)) or [""]
                index = draw(st.integers(0, len(items) - 1))
                items[index] = _slip(items[index], odd, draw(st.integers(0, len(items[index]))))
                assign(target, fd, items)
            else:
                value = getattr(target, fd.name)
                setattr(target, fd.name, _slip(value, odd, draw(st.integers(0, len(value)))))
        elif how == "element" and _is_repeated(fd) and not _is_map(fd):
            items = list(getattr(target, fd.name))
            element = draw(builder.wild_element(fd, 1))
            replace = draw(st.booleans())
            if items and replace:
                items[draw(st.integers(0, len(items) - 1))] = element
            else:
                items.append(element)
            assign(target, fd, items)
        else:
            assign(target, fd, draw(builder.wild_field(fd, 1, target.DESCRIPTOR)))
        return message

    return mutate()


# ------------------------------------------------------------------ raw payloads

# Byte strings that are not protobuf, each broken in its own way: a truncated varint, an
# overlong one, a length running past the end (small and 2^32), wire types 6 and 7, a group
# start without its end and an end without a start, field number 0, groups nested 200 deep
# (past the parser's recursion limit).
MALFORMED_PAYLOADS: tuple[bytes, ...] = (
    b"\x08",
    b"\x08\xff",
    b"\x08" + b"\xff" * 10 + b"\x01",
    b"\x0a\x7f",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x0e\x00",
    b"\x0f\x00",
    b"\x0b",
    b"\x0c",
    b"\x00\x00",
    b"\x0b" * 200 + b"\x0c" * 200,
)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _targeted_payloads(descriptor: AnyDescriptor) -> list[bytes]:
    """Payloads aimed at the fields of `descriptor`: invalid UTF-8 in each string field, a
    sub-message field holding garbage, an integer field sent length-delimited."""
    payloads = []
    for fd in descriptor.fields:
        delimited = _varint(fd.number << 3 | 2)
        if fd.type == FD.TYPE_STRING:
            payloads.append(delimited + b"\x02\xc3\x28")  # an unfinished two-byte sequence
            payloads.append(delimited + b"\x03\xed\xa0\x80")  # a UTF-8-encoded surrogate
        elif fd.type == FD.TYPE_MESSAGE:
            payloads.append(delimited + b"\x03\x0a\x7f\x00")
        elif fd.type in _INT_RANGES:
            payloads.append(delimited + b"\x01\x00")  # wrong wire type for a (non-packed) scalar
    return payloads


def raw_payloads(builder: MessageStrategies, descriptor: AnyDescriptor) -> SearchStrategy[bytes]:
    """Bytes sent as a request to a method taking `descriptor`: random bytes, known-malformed
    ones, and serialized (valid or wild) requests with one byte flipped, cut short, or with
    bytes inserted. Some of them still parse, which is fine: then they are requests."""
    serialized = st.one_of(builder.valid(descriptor), builder.wild(descriptor)).map(
        lambda m: m.SerializeToString(deterministic=True)
    )

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(serialized))
        how = draw(st.sampled_from(("flip", "cut", "insert", "append")))
        at = draw(st.integers(0, len(data)))
        if how == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.sampled_from(MALFORMED_PAYLOADS))
        return bytes(data)

    targeted = _targeted_payloads(descriptor)
    return st.one_of(
        st.sampled_from(MALFORMED_PAYLOADS + tuple(targeted)),
        damaged(),
        st.binary(max_size=128),
    )
