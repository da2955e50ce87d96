"""The fast validation plans report exactly what protovalidate reports.

For every message type of gen/python/cinema with `buf.validate` rules, messages are built from the
rules themselves: valid values, and for each rule the values just inside and just outside it
(empty strings, lengths at and past the limits counted in code points, malformed UUIDs, 0 / 1 /
max / max+1 items, duplicates, out-of-range integers, unset required messages, bad nested fields).
Each one is validated by the fast path and by protovalidate, and the two ordered lists of
(field path, message) must be equal. A synthetic proto covers the rules our contracts do not use yet
(other integer types, exclusive ranges, const/in/not_in, enums, optional and oneof fields, cycles),
and the types that must fall back to protovalidate are pinned.

Randomness is seeded: the run is deterministic.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from buf.validate import validate_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

import cinema
from services.kit.fast_validation import fallback_reason, plan_for
from services.kit.validation import protovalidate_violations_of, violations_of

SEED = 20261124
INT_LIMITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def _all_message_types() -> list[Descriptor]:
    found: list[Descriptor] = []

    def walk(descriptor: Descriptor) -> None:
        if descriptor.GetOptions().map_entry:
            return
        found.append(descriptor)
        for nested in descriptor.nested_types:
            walk(nested)

    for module_info in pkgutil.walk_packages(cinema.__path__, "cinema."):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(module_info.name)
            for descriptor in module.DESCRIPTOR.message_types_by_name.values():
                walk(descriptor)
    return sorted(found, key=lambda d: d.full_name)


ALL_TYPES = _all_message_types()
# Types whose validation does something: they have rules, or reach a type that has.
RULED_TYPES = [d for d in ALL_TYPES if (plan_for(d) is None or plan_for(d).checks)]  # type: ignore[union-attr]


def _rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = fd.GetOptions()
    return options.Extensions[validate_pb2.field] if options.HasExtension(validate_pb2.field) else None


# ---------------------------------------------------------------------------------------------
# Values from rules. A rule the generator does not know fails the test: extend it with the rule.

Gen = Callable[[random.Random], Any]


@dataclass
class Candidates:
    """How to draw a valid value of a field, and the values at and past its rules' boundaries."""

    valid: Gen
    boundary: list[Any]


def _digits(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(rng.randint(low, high)))


# Valid values and boundary values of every pattern in protos/ (keyed by the pattern itself).
PATTERNS: dict[str, Candidates] = {
    "^[A-Z][1-9][0-9]?$": Candidates(
        lambda rng: rng.choice(string.ascii_uppercase) + str(rng.randint(1, 99)),
        ["", "A1", "Z99", "a1", "A0", "A100", "AA1", "A1\n", "\u00c41", " A1", "A01", "A\uff11"],
    ),
    "^[0-9]{12,19}$": Candidates(
        lambda rng: _digits(rng, 12, 19),
        ["", "1" * 11, "1" * 12, "9" * 19, "1" * 20, "4242 4242 4242 4242", "\u0664" * 16, "42424242424242a"],
    ),
    "^[0-9]{3,4}$": Candidates(
        lambda rng: _digits(rng, 3, 4), ["", "12", "123", "1234", "12345", "12a", "\uff11\uff12\uff13"]
    ),
    "^[A-Z]{3}$": Candidates(
        lambda rng: "".join(rng.choice(string.ascii_uppercase) for _ in range(3)),
        ["", "EU", "EUR", "EURO", "eur", "\u00c9UR", "EUR\n"],
    ),
    "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$": Candidates(
        lambda rng: rng.choice(["", f"20{rng.randint(10, 99)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"]),
        ["", "2026-11-24", "2026-1-1", "2026-11-24\n", "x2026-11-24", "2026/11/24"],
    ),
}

UUIDS_BAD = [
    "",
    "not-a-uuid",
    "42",
    "12345678-1234-1234-1234-1234567890ab\n",
    "12345678-1234-1234-1234-1234567890a",
    "{12345678-1234-1234-1234-1234567890ab}",
    "123456781234123412341234567890ab",
    "g2345678-1234-1234-1234-1234567890ab",
    "12345678-1234-1234-1234-1234567890AB",
    "12345678-1234-1234-1234-1234567890ab-and-then-some-more",
]
EMAILS = ["", "a@b.com", "first.last+tag@example.co.uk", "a@", "@b.com", "a b@c.com", "a@b..com", "a@-b.com", "ü@b.com"]
EMAILS.append("someone.with.a.long.name@" + "x" * 64 + ".com")
URIS = [
    "",
    "https://example.com/p.jpg",
    "http://[::1]:8080/x?y#z",
    "example.com",
    "/relative/path",
    "https://exa mple.com/",
    "http://%zz/",
    "ht tp://x",
    "mailto:someone@example.com",
    "https://example.com/a long path with spaces that goes on and on",
]
# Letters of 1 to 4 UTF-8 bytes: lengths are counted in code points, not bytes.
LETTERS = ["x", "é", "日", "🎬"]


def _text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(length))


def _string_candidates(fd: FieldDescriptor, rules: validate_pb2.StringRules | None) -> Candidates:
    if rules is None or not rules.ListFields():
        return Candidates(lambda rng: rng.choice(["", "x", _text(rng, 5)]), [])
    known = {"uuid", "pattern", "email", "uri", "const", "min_len", "max_len"}
    unknown = {f.name for f, _ in rules.ListFields()} - known
    assert not unknown, f"{fd.full_name}: teach the generator the rules {unknown}"
    if rules.uuid:
        return Candidates(lambda rng: str(uuid.UUID(int=rng.getrandbits(128))), UUIDS_BAD)
    if rules.HasField("pattern"):
        assert rules.pattern in PATTERNS, f"{fd.full_name}: teach the generator the pattern {rules.pattern!r}"
        return PATTERNS[rules.pattern]
    if rules.email:
        return Candidates(lambda rng: rng.choice(EMAILS[1:3]), EMAILS)
    if rules.uri:
        extra = ["https://example.com/" + "p" * 1990, "https://example.com/" + "p" * 1981]
        return Candidates(lambda rng: rng.choice(URIS[1:3]), URIS + extra)
    if rules.HasField("const"):
        const = rules.const
        return Candidates(lambda rng: const, ["", const + "x", const.upper() + " ", " " + const])
    low = rules.min_len if rules.HasField("min_len") else 0
    high = rules.max_len if rules.HasField("max_len") else low + 20
    boundary = [""] + [letter * n for n in {low - 1, low, high, high + 1} if n >= 0 for letter in ("x", "🎬")]
    return Candidates(lambda rng: _text(rng, rng.choice([low, high, rng.randint(low, high)])), boundary)


def _int_candidates(fd: FieldDescriptor, rules: Any | None) -> Candidates:
    minimum, maximum = INT_LIMITS[fd.type]
    if rules is None:
        return Candidates(lambda rng: rng.choice([0, 7]), [minimum, maximum])
    unknown = {f.name for f, _ in rules.ListFields()} - {"gt", "gte", "lt", "lte"}
    assert not unknown, f"{fd.full_name}: teach the generator the rules {unknown}"
    low = rules.gte if rules.HasField("gte") else rules.gt + 1 if rules.HasField("gt") else minimum
    high = rules.lte if rules.HasField("lte") else rules.lt - 1 if rules.HasField("lt") else maximum
    edges = {low - 1, low, high, high + 1, 0, -1, 1, minimum, maximum}
    return Candidates(
        lambda rng: rng.choice([low, high, rng.randint(low, high)]), sorted(v for v in edges if minimum <= v <= maximum)
    )


def _scalar_candidates(fd: FieldDescriptor, rules: validate_pb2.FieldRules | None) -> Candidates:
    type_case = rules.WhichOneof("type") if rules is not None else None
    if fd.type == FieldDescriptor.TYPE_STRING:
        return _string_candidates(fd, rules.string if type_case == "string" else None)  # type: ignore[union-attr]
    if fd.type in INT_LIMITS:
        return _int_candidates(fd, getattr(rules, type_case) if type_case else None)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        if type_case == "enum":  # `defined_only`: 99 below is the undefined value it refuses
            unknown = {f.name for f, _ in rules.enum.ListFields()} - {"defined_only"}  # type: ignore[union-attr]
            assert not unknown, f"{fd.full_name}: teach the generator the rules {unknown}"
        else:
            assert type_case is None, f"{fd.full_name}: teach the generator {type_case} rules"
        numbers = list(fd.enum_type.values_by_number)
        return Candidates(lambda rng: rng.choice(numbers), [0, 99])
    assert type_case is None, f"{fd.full_name}: teach the generator {type_case} rules"
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return Candidates(lambda rng: rng.random() < 0.5, [])
    if fd.type == FieldDescriptor.TYPE_DOUBLE:
        return Candidates(lambda rng: rng.choice([0.0, 4.5]), [])
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return Candidates(lambda rng: rng.choice([b"", b"\x00x"]), [])
    raise AssertionError(f"{fd.full_name}: teach the generator fields of type {fd.type}")


class Generator:
    """Messages of one type from its rules: valid ones, and ones with a value at or past a boundary."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def valid(self, descriptor: Descriptor, depth: int = 0) -> Message:
        message = message_factory.GetMessageClass(descriptor)()
        for fd in descriptor.fields:
            self._set_valid(message, fd, depth)
        return message

    def _set_valid(self, message: Message, fd: FieldDescriptor, depth: int) -> None:
        rules = _rules(fd)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            return
        if fd.message_type is not None:
            if fd.is_repeated:
                if depth < 2:
                    for _ in range(self.rng.randint(0, 2)):
                        getattr(message, fd.name).add().CopyFrom(self.valid(fd.message_type, depth + 1))
                return
            required = rules is not None and rules.required
            if fd.message_type.full_name == "google.protobuf.Timestamp":
                getattr(message, fd.name).CopyFrom(timestamp_pb2.Timestamp(seconds=self.rng.randint(0, 2**33)))
            elif fd.message_type.full_name == "google.protobuf.FieldMask":
                getattr(message, fd.name).paths.append("title")
            elif required or (depth < 3 and self.rng.random() < 0.8):
                getattr(message, fd.name).CopyFrom(self.valid(fd.message_type, depth + 1))
            return
        if fd.is_repeated:
            getattr(message, fd.name).extend(self._valid_list(fd, rules))
            return
        setattr(message, fd.name, _scalar_candidates(fd, rules).valid(self.rng))

    def _valid_list(self, fd: FieldDescriptor, rules: validate_pb2.FieldRules | None) -> list[Any]:
        repeated = rules.repeated if rules is not None else validate_pb2.RepeatedRules()
        items = _scalar_candidates(fd, repeated.items if repeated.HasField("items") else None)
        low = repeated.min_items
        high = repeated.max_items if repeated.HasField("max_items") else low + 3
        size = self.rng.choice([low, min(high, low + 2), high if high <= 12 else low + 1])
        values: list[Any] = []
        for _ in range(50 * (size + 1)):
            if len(values) == size:
                break
            value = items.valid(self.rng)
            if not (repeated.unique and value in values):
                values.append(value)
        return values

    def mutations(self, descriptor: Descriptor, depth: int = 0) -> Iterator[Message]:
        """A valid message, then one message per boundary value of each field (nested ones too)."""
        base = self.valid(descriptor, depth)
        yield base
        for fd in descriptor.fields:
            for value in self._field_boundaries(fd, base, depth):
                mutated = message_factory.GetMessageClass(descriptor)()
                mutated.CopyFrom(base)
                if fd.message_type is not None and not fd.is_repeated:
                    if value is None:
                        mutated.ClearField(fd.name)
                    else:
                        getattr(mutated, fd.name).CopyFrom(value)
                elif fd.is_repeated:
                    del getattr(mutated, fd.name)[:]
                    container = getattr(mutated, fd.name)
                    if fd.message_type is not None:
                        for item in value:
                            container.add().CopyFrom(item)
                    else:
                        container.extend(value)
                else:
                    setattr(mutated, fd.name, value)
                yield mutated

    def _field_boundaries(self, fd: FieldDescriptor, base: Message, depth: int) -> Iterator[Any]:
        rules = _rules(fd)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            return
        if fd.message_type is not None:
            if fd.message_type.full_name in ("google.protobuf.Timestamp", "google.protobuf.FieldMask"):
                yield from ([None, message_factory.GetMessageClass(fd.message_type)()] if not fd.is_repeated else [])
                return
            if fd.is_repeated:
                if depth < 2:
                    bad = list(self.mutations(fd.message_type, depth + 1))
                    for chunk in range(0, len(bad), 3):
                        yield [self.valid(fd.message_type, depth + 1), *bad[chunk : chunk + 3]]
                return
            yield None
            yield message_factory.GetMessageClass(fd.message_type)()
            if depth < 3:
                yield from self.mutations(fd.message_type, depth + 1)
            return
        if fd.is_repeated:
            yield from self._list_boundaries(fd, rules)
            return
        yield from _scalar_candidates(fd, rules).boundary

    def _list_boundaries(self, fd: FieldDescriptor, rules: validate_pb2.FieldRules | None) -> Iterator[list[Any]]:
        repeated = rules.repeated if rules is not None else validate_pb2.RepeatedRules()
        items = _scalar_candidates(fd, repeated.items if repeated.HasField("items") else None)
        valid = self._valid_list(fd, rules)
        yield []
        high = repeated.max_items if repeated.HasField("max_items") else 3
        # Thousands of items cost protovalidate seconds: test_thousands_of_seats covers that limit.
        sizes = {1, 2, repeated.min_items} | ({high, high + 1} if high <= 50 else set())
        for size in sorted(sizes):
            values = [items.valid(self.rng) for _ in range(size)]
            yield values
            yield sorted(set(values))
        if valid:
            yield [*valid, valid[0]]
        for bad in items.boundary:
            yield [*valid, bad]
            yield [bad, *valid, bad]

    def random(self, descriptor: Descriptor, depth: int = 0) -> Message:
        """A message whose every field is valid or, now and then, at a boundary."""
        message = message_factory.GetMessageClass(descriptor)()
        for fd in descriptor.fields:
            if self.rng.random() < 0.8:
                self._set_valid(message, fd, depth)
                continue
            choices = list(self._field_boundaries(fd, message, depth + 2))
            if not choices:
                continue
            value = self.rng.choice(choices)
            if fd.message_type is not None and not fd.is_repeated:
                if value is not None:
                    getattr(message, fd.name).CopyFrom(value)
            elif fd.is_repeated and fd.message_type is not None:
                for item in value:
                    getattr(message, fd.name).add().CopyFrom(item)
            elif fd.is_repeated:
                getattr(message, fd.name).extend(value)
            else:
                setattr(message, fd.name, value)
        return message


def _assert_same(message: Message) -> bool:
    fast = violations_of(message)
    reference = protovalidate_violations_of(message)
    assert fast == reference, f"{message.DESCRIPTOR.full_name} {message}"
    return not reference


# ---------------------------------------------------------------------------------------------


def test_the_contracts_have_ruled_types_and_only_update_movie_falls_back() -> None:
    names = {d.full_name for d in RULED_TYPES}
    for expected in (
        "cinema.reservation.v1.CreateReservationRequest",
        "cinema.payment.v1.AuthorizePaymentRequest",
        "cinema.review.v1.CreateReviewRequest",
        "cinema.movie.v1.CreateMovieRequest",
        "cinema.movie.v1.ScheduleScreeningRequest",
        "cinema.events.v1.EventEnvelope",
    ):
        assert expected in names
    falling_back = {d.full_name: fallback_reason(d) for d in ALL_TYPES if fallback_reason(d) is not None}
    assert set(falling_back) == {"cinema.movie.v1.UpdateMovieRequest"}, falling_back
    assert "message-level" in falling_back["cinema.movie.v1.UpdateMovieRequest"]  # type: ignore[operator]


# What a service validates: requests, and the envelope of every event. The other types with rules
# (responses, events, read-model entries) only nest the same messages: they get a lighter run.
VALIDATED_TYPES = [
    d
    for d in RULED_TYPES
    if plan_for(d) is not None and (d.name.endswith("Request") or d.full_name == "cinema.events.v1.EventEnvelope")
]
NESTING_TYPES = [d for d in RULED_TYPES if plan_for(d) is not None and d not in VALIDATED_TYPES]


@pytest.mark.parametrize("descriptor", VALIDATED_TYPES, ids=lambda d: d.full_name)
def test_fast_path_reports_what_protovalidate_reports(descriptor: Descriptor) -> None:
    generator = Generator(random.Random(f"{SEED}:{descriptor.full_name}"))
    verdicts = [_assert_same(message) for message in generator.mutations(descriptor)]
    verdicts += [_assert_same(generator.random(descriptor)) for _ in range(20)]
    assert any(verdicts), "no valid message was built"
    assert not all(verdicts), "no invalid message was built"


@pytest.mark.parametrize("descriptor", NESTING_TYPES, ids=lambda d: d.full_name)
def test_types_that_nest_ruled_messages_agree_too(descriptor: Descriptor) -> None:
    generator = Generator(random.Random(f"{SEED}:{descriptor.full_name}"))
    assert _assert_same(generator.valid(descriptor))
    for _ in range(5):
        _assert_same(generator.random(descriptor))


def test_thousands_of_seats_and_a_duplicate_among_them() -> None:
    from cinema.common.v1 import seat_pb2

    every_seat = [f"{row}{n}" for row in string.ascii_uppercase for n in range(1, 100)]
    assert _assert_same(seat_pb2.SeatMap(rows=26, seats_per_row=99, blocked_seats=every_seat))
    assert not _assert_same(seat_pb2.SeatMap(rows=26, seats_per_row=99, blocked_seats=[*every_seat, "A1"]))


# ---------------------------------------------------------------------------------------------
# A synthetic contract with the rules ours do not use (yet), built in the default pool.


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
    rules: validate_pb2.FieldRules | None = None,
) -> descriptor_pb2.FieldDescriptorProto:
    fd = message.field.add(name=name, number=len(message.field) + 1, type=kind)
    fd.label = fd.LABEL_REPEATED if repeated else fd.LABEL_OPTIONAL
    if type_name:
        fd.type_name = type_name
    if rules is not None:
        fd.options.Extensions[validate_pb2.field].CopyFrom(rules)
    return fd


F = descriptor_pb2.FieldDescriptorProto


def R(**rules: Any) -> validate_pb2.FieldRules:  # reads like the message it builds
    return validate_pb2.FieldRules(**rules)


PKG = "kit.fastvalidation.test"


def _synthetic_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="kit/fastvalidation/test/synthetic.proto",
        package=PKG,
        syntax="proto3",
        dependency=["buf/validate/validate.proto", "google/protobuf/timestamp.proto"],
    )
    color = file.enum_type.add(name="Color")
    for number, name in enumerate(["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"]):
        color.value.add(name=name, number=number)

    inner = file.message_type.add(name="Inner")
    _field(inner, "code", F.TYPE_STRING, rules=R(string={"len": 3, "pattern": "^[a-z]+$"}))
    _field(inner, "n", F.TYPE_INT32, rules=R(int32={"lte": 5}))

    s = file.message_type.add(name="Synthetic")
    _field(s, "i32", F.TYPE_INT32, rules=R(int32={"gt": 5, "lt": 10}))
    _field(s, "i32x", F.TYPE_INT32, rules=R(int32={"gt": 10, "lt": 5}))
    _field(s, "i64", F.TYPE_INT64, rules=R(int64={"gte": -3, "lte": 3}))
    _field(s, "i64x", F.TYPE_INT64, rules=R(int64={"gte": 3, "lte": -3}))
    _field(s, "u32", F.TYPE_UINT32, rules=R(uint32={"gt": 2, "lte": 9}))
    _field(s, "u64", F.TYPE_UINT64, rules=R(uint64={"gt": 9, "lte": 2}))
    _field(s, "s32", F.TYPE_SINT32, rules=R(sint32={"lt": 0}))
    _field(s, "s64", F.TYPE_SINT64, rules=R(sint64={"lte": 100, "example": [5]}))
    _field(s, "f32", F.TYPE_FIXED32, rules=R(fixed32={"in": [1, 2, 3]}))
    _field(s, "f64", F.TYPE_FIXED64, rules=R(fixed64={"not_in": [0, 4]}))
    _field(s, "sf32", F.TYPE_SFIXED32, rules=R(sfixed32={"const": 7}))
    _field(s, "sf64", F.TYPE_SFIXED64, rules=R(sfixed64={"gte": 1, "lt": 5}))
    _field(s, "i32gte_lt_x", F.TYPE_INT32, rules=R(int32={"gte": 5, "lt": 1}))
    _field(s, "i32gt_lte", F.TYPE_INT32, rules=R(int32={"gt": -1, "lte": 1}))
    _field(s, "i32lt_lte", F.TYPE_INT32, rules=R(int32={"lt": 3, "lte": 4}))
    _field(s, "flag", F.TYPE_BOOL, rules=R(bool={"const": True}))
    _field(s, "color", F.TYPE_ENUM, type_name=f".{PKG}.Color", rules=R(enum={"defined_only": True, "not_in": [2]}))
    _field(s, "shade", F.TYPE_ENUM, type_name=f".{PKG}.Color", rules=R(enum={"in": [1, 2], "const": 1}))
    _field(s, "code", F.TYPE_STRING, rules=R(string={"len": 3, "prefix": "a", "suffix": "z", "contains": "m"}))
    _field(s, "word", F.TYPE_STRING, rules=R(string={"in": ["x", "y"]}))
    _field(s, "not_word", F.TYPE_STRING, rules=R(string={"not_in": ["bad", "worse"]}))
    _field(s, "const_word", F.TYPE_STRING, rules=R(string={"const": "ok"}))
    _field(s, "tid", F.TYPE_STRING, rules=R(string={"tuuid": True}))
    _field(s, "host", F.TYPE_STRING, rules=R(string={"hostname": True, "max_len": 20}))
    _field(s, "no_uuid", F.TYPE_STRING, rules=R(string={"uuid": False}))
    _field(s, "req_i32", F.TYPE_INT32, rules=R(required=True, int32={"gte": 0}))
    _field(s, "zero_ok", F.TYPE_STRING, rules=R(ignore=validate_pb2.IGNORE_IF_ZERO_VALUE, string={"min_len": 5}))
    _field(
        s,
        "tags",
        F.TYPE_STRING,
        repeated=True,
        rules=R(
            repeated={
                "min_items": 1,
                "unique": True,
                "items": {"string": {"min_len": 2, "max_len": 3}, "ignore": validate_pb2.IGNORE_IF_ZERO_VALUE},
            }
        ),
    )
    _field(s, "nums", F.TYPE_INT32, repeated=True, rules=R(repeated={"items": {"int32": {"gt": 0}}, "unique": True}))
    _field(
        s,
        "opt_tags",
        F.TYPE_STRING,
        repeated=True,
        rules=R(ignore=validate_pb2.IGNORE_IF_ZERO_VALUE, repeated={"min_items": 2}),
    )
    _field(s, "req_tags", F.TYPE_STRING, repeated=True, rules=R(required=True))
    _field(s, "inner", F.TYPE_MESSAGE, type_name=f".{PKG}.Inner")
    _field(s, "inners", F.TYPE_MESSAGE, repeated=True, type_name=f".{PKG}.Inner")
    _field(s, "skipped", F.TYPE_MESSAGE, type_name=f".{PKG}.Inner", rules=R(ignore=validate_pb2.IGNORE_ALWAYS))
    _field(s, "req_inner", F.TYPE_MESSAGE, type_name=f".{PKG}.Inner", rules=R(required=True))
    _field(s, "self_ref", F.TYPE_MESSAGE, type_name=f".{PKG}.Synthetic")
    _field(s, "when", F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp", rules=R(required=True))
    s.oneof_decl.add(name="choice")
    _field(s, "one_a", F.TYPE_STRING, rules=R(string={"min_len": 2})).oneof_index = 0
    _field(s, "one_b", F.TYPE_MESSAGE, type_name=f".{PKG}.Inner").oneof_index = 0
    s.oneof_decl.add(name="_opt_i32")
    optional = _field(s, "opt_i32", F.TYPE_INT32, rules=R(int32={"gte": 1}))
    optional.oneof_index, optional.proto3_optional = 1, True

    # Types that must fall back to protovalidate.
    cel = file.message_type.add(name="WithMessageCel")
    cel.options.Extensions[validate_pb2.message].cel.add(id="x", message="x must be 1", expression="this.x == 1")
    _field(cel, "x", F.TYPE_INT32)
    field_cel = file.message_type.add(name="WithFieldCel")
    _field(
        field_cel,
        "x",
        F.TYPE_INT32,
        rules=R(cel=[validate_pb2.Rule(id="x", message="even", expression="this % 2 == 0")]),
    )
    with_map = file.message_type.add(name="WithMap")
    entry = with_map.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    _field(entry, "key", F.TYPE_STRING)
    _field(entry, "value", F.TYPE_STRING)
    _field(
        with_map,
        "labels",
        F.TYPE_MESSAGE,
        repeated=True,
        type_name=f".{PKG}.WithMap.LabelsEntry",
        rules=R(map={"max_pairs": 1}),
    )
    stamp = file.message_type.add(name="WithTimestampRule")
    _field(
        stamp, "at", F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp", rules=R(timestamp={"gt": {"seconds": 10}})
    )
    double = file.message_type.add(name="WithDouble")
    _field(double, "d", F.TYPE_DOUBLE, rules=R(double={"gt": 0}))
    holder = file.message_type.add(name="HoldsFallback")
    _field(holder, "name", F.TYPE_STRING, rules=R(string={"min_len": 1}))
    _field(holder, "inner", F.TYPE_MESSAGE, type_name=f".{PKG}.WithMessageCel")
    return file


def _synthetic_classes() -> dict[str, type[Message]]:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("kit/fastvalidation/test/synthetic.proto")
    except KeyError:
        pool.Add(_synthetic_file())
    names = [
        "Inner",
        "Synthetic",
        "WithMessageCel",
        "WithFieldCel",
        "WithMap",
        "WithTimestampRule",
        "WithDouble",
        "HoldsFallback",
    ]
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PKG}.{name}")) for name in names}


SYNTHETIC_VALUES: dict[str, list[Any]] = {
    "i32": [0, 5, 6, 9, 10, -1],
    "i32x": [4, 5, 6, 10, 11, 0],
    "i64": [-4, -3, 0, 3, 4],
    "i64x": [-4, -3, 0, 3, 4],
    "u32": [0, 2, 3, 9, 10],
    "u64": [0, 2, 3, 9, 10],
    "s32": [-1, 0, 1],
    "s64": [100, 101, -(2**63)],
    "f32": [0, 1, 3, 4],
    "f64": [0, 4, 5],
    "sf32": [0, 7, 8],
    "sf64": [0, 1, 4, 5],
    "i32gte_lt_x": [0, 1, 4, 5],
    "i32gt_lte": [-1, 0, 1, 2],
    "i32lt_lte": [2, 3, 4, 5],
    "flag": [False, True],
    "color": [0, 1, 2, 7],
    "shade": [0, 1, 2, 3],
    "code": ["", "amz", "abz", "amx", "xmz", "amzz", "a日z"],
    "word": ["", "x", "y", "z"],
    "not_word": ["", "bad", "worse", "ok"],
    "const_word": ["", "ok", "OK"],
    "tid": [
        "",
        "0123456789abcdef0123456789ABCDEF",
        "0123456789abcdef0123456789abcde",
        uuid.UUID(int=7).hex + "\n",
        "0123456789abcdef" * 3,
    ],
    "host": ["", "example.com", "-bad.com", "a..b", "x" * 21, "127.0.0.1", "ex_ample.com", "-" + "a" * 45],
    "no_uuid": ["", "not-a-uuid"],
    "req_i32": [0, 1, -1],
    "zero_ok": ["", "abcd", "abcde"],
    "tags": [[], ["a"], ["ab", "ab"], ["", ""], ["", "ab"], ["abcd"], ["a", "", "abcd", "abcd"]],
    "nums": [[], [1, 2], [0, 1, 1], [-1]],
    "opt_tags": [[], ["a"], ["a", "b"]],
    "req_tags": [[], ["a"]],
}


def _synthetic_messages(classes: dict[str, type[Message]], rng: random.Random) -> Iterator[Message]:
    synthetic, inner = classes["Synthetic"], classes["Inner"]
    inner_values = [None, inner(), inner(code="abc", n=5), inner(code="ab", n=6), inner(code="ABC"), inner(code="a日c")]

    def one(picks: dict[str, Any]) -> Message:
        message = synthetic()
        for name, value in picks.items():
            if name in ("inner", "skipped", "req_inner", "one_b"):
                if value is not None:
                    getattr(message, name).CopyFrom(value)
            elif name == "inners":
                for item in value:
                    message.inners.add().CopyFrom(item)  # type: ignore[attr-defined]
            elif name == "self_ref":
                if value is not None:
                    message.self_ref.CopyFrom(value)  # type: ignore[attr-defined]
            elif name == "when":
                if value:
                    message.when.seconds = 5  # type: ignore[attr-defined]
            elif name == "opt_i32":
                if value is not None:
                    message.opt_i32 = value  # type: ignore[attr-defined]
            elif isinstance(value, list):
                getattr(message, name).extend(value)
            elif value is not None:
                setattr(message, name, value)
        return message

    extra: dict[str, list[Any]] = {
        "inner": inner_values,
        "skipped": inner_values,
        "req_inner": inner_values,
        "one_b": inner_values,
        "inners": [[], [inner(code="abc")], [inner(code="abc"), inner(code="x", n=9), inner()]],
        "when": [False, True],
        "opt_i32": [None, 0, 1],
        "one_a": [None, "", "a", "ab"],
    }
    choices = {**SYNTHETIC_VALUES, **extra}
    valid = {
        **{name: values[0] for name, values in SYNTHETIC_VALUES.items()},
        **{
            "i32": 6,
            "i64": 0,
            "i64x": 4,
            "i32gt_lte": 0,
            "u32": 3,
            "s64": 0,
            "f32": 1,
            "f64": 5,
            "sf32": 7,
            "sf64": 1,
            "flag": True,
        },
        **{"color": 1, "shade": 1, "code": "amz", "word": "x", "not_word": "ok", "const_word": "ok"},
        **{"tid": uuid.UUID(int=7).hex, "host": "example.com", "req_i32": 1, "tags": ["ab", ""], "req_tags": ["a"]},
        **{"req_inner": inner(code="abc"), "when": True, "opt_i32": 1},
    }
    yield one(valid)
    # Field rules are independent of each other: message k carries the k-th value of every field,
    # so a few messages try every value.
    for k in range(max(len(values) for values in choices.values())):
        yield one({name: values[k] for name, values in choices.items() if k < len(values)})
        yield one({name: values[-1 - k] for name, values in choices.items() if k < len(values)})
    for _ in range(40):
        picks = {name: rng.choice(values) for name, values in choices.items() if rng.random() < 0.6}
        if rng.random() < 0.2:
            picks["self_ref"] = one(
                {name: rng.choice(values) for name, values in choices.items() if rng.random() < 0.3}
            )
        yield one(picks)


def test_synthetic_rules_report_what_protovalidate_reports() -> None:
    classes = _synthetic_classes()
    descriptor = classes["Synthetic"].DESCRIPTOR
    assert plan_for(descriptor) is not None, fallback_reason(descriptor)
    valid = invalid = 0
    for message in _synthetic_messages(classes, random.Random(SEED)):
        if _assert_same(message):
            valid += 1
        else:
            invalid += 1
    assert valid > 0
    assert invalid > 30


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("WithMessageCel", "message-level"),
        ("WithFieldCel", "cel"),
        ("WithMap", "map"),
        ("WithTimestampRule", "timestamp"),
        ("WithDouble", "double"),
        ("HoldsFallback", "message-level"),
    ],
)
def test_rules_the_fast_path_lacks_fall_back_to_protovalidate(name: str, reason: str) -> None:
    message_class = _synthetic_classes()[name]
    descriptor = message_class.DESCRIPTOR
    assert plan_for(descriptor) is None
    assert reason in (fallback_reason(descriptor) or "")
    # ... and the fallback still enforces them.
    broken = message_class()
    if name == "WithMessageCel":
        assert violations_of(broken) == protovalidate_violations_of(broken) != ()
    if name == "HoldsFallback":
        broken.inner.x = 2  # type: ignore[attr-defined]
        assert [v.field for v in violations_of(broken)] == ["name", "inner"]
    if name == "WithDouble":
        assert [v.field for v in violations_of(broken)] == ["d"]
