"""The descriptor-driven strategies themselves (no servers): what they generate, checked on a
synthetic message type with every kind of field and on the request types of the contracts."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    timestamp_pb2,
)
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.kit.validation import malformed_times, strings_with_nul, violations_of
from tests.fuzz.rpcs import Rpc, all_rpcs
from tests.fuzz.strategies import (
    DURATION_MAX_S,
    TIMESTAMP_MAX_S,
    Hints,
    MessageStrategies,
    raw_payloads,
)

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "f_double": F.TYPE_DOUBLE,
    "f_float": F.TYPE_FLOAT,
    "f_int64": F.TYPE_INT64,
    "f_uint64": F.TYPE_UINT64,
    "f_int32": F.TYPE_INT32,
    "f_fixed64": F.TYPE_FIXED64,
    "f_fixed32": F.TYPE_FIXED32,
    "f_bool": F.TYPE_BOOL,
    "f_string": F.TYPE_STRING,
    "f_bytes": F.TYPE_BYTES,
    "f_uint32": F.TYPE_UINT32,
    "f_sfixed32": F.TYPE_SFIXED32,
    "f_sfixed64": F.TYPE_SFIXED64,
    "f_sint32": F.TYPE_SINT32,
    "f_sint64": F.TYPE_SINT64,
}
PACKAGE = "cinema_fuzz_selftest.v1"


def _everything() -> Descriptor:
    """`Everything`: each scalar type, an enum, a nested and a self-recursive message, repeated
    fields, a oneof, two maps, a proto3 optional, Timestamp, Duration and FieldMask."""
    pool = descriptor_pool.Default()
    name = f"{PACKAGE}.Everything"
    try:
        found: Descriptor = pool.FindMessageTypeByName(name)
        return found
    except KeyError:
        pass
    fp = descriptor_pb2.FileDescriptorProto(
        name="cinema_fuzz_selftest/v1/everything.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[
            "google/protobuf/timestamp.proto",
            "google/protobuf/duration.proto",
            "google/protobuf/field_mask.proto",
        ],
    )
    fp.enum_type.add(name="Colour").value.extend(
        [
            descriptor_pb2.EnumValueDescriptorProto(name="COLOUR_UNSPECIFIED", number=0),
            descriptor_pb2.EnumValueDescriptorProto(name="COLOUR_RED", number=1),
        ]
    )
    inner = fp.message_type.add(name="Inner")
    inner.field.add(name="label", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    inner.field.add(name="child", number=2, type=F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Inner", label=F.LABEL_OPTIONAL)
    m = fp.message_type.add(name="Everything")
    number = 1
    for field_name, field_type in SCALARS.items():
        m.field.add(name=field_name, number=number, type=field_type, label=F.LABEL_OPTIONAL)
        number += 1

    def add(field_name: str, field_type: int, label: int = F.LABEL_OPTIONAL, **extra: Any) -> Any:
        nonlocal number
        added = m.field.add(name=field_name, number=number, type=field_type, label=label, **extra)
        number += 1
        return added

    add("colour", F.TYPE_ENUM, type_name=f".{PACKAGE}.Colour")
    add("inner", F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Inner")
    add("names", F.TYPE_STRING, F.LABEL_REPEATED)
    add("inners", F.TYPE_MESSAGE, F.LABEL_REPEATED, type_name=f".{PACKAGE}.Inner")
    add("when", F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    add("how_long", F.TYPE_MESSAGE, type_name=".google.protobuf.Duration")
    add("mask", F.TYPE_MESSAGE, type_name=".google.protobuf.FieldMask")
    m.oneof_decl.add(name="choice")
    add("choice_text", F.TYPE_STRING, oneof_index=0)
    add("choice_inner", F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Inner", oneof_index=0)
    m.oneof_decl.add(name="_maybe")
    add("maybe", F.TYPE_INT32, oneof_index=1, proto3_optional=True)
    for map_name, key_type, value_type, value_type_name in (
        ("by_name", F.TYPE_STRING, F.TYPE_MESSAGE, f".{PACKAGE}.Inner"),
        ("by_number", F.TYPE_INT64, F.TYPE_STRING, ""),
    ):
        entry = m.nested_type.add(name=f"{map_name.title().replace('_', '')}Entry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=key_type, label=F.LABEL_OPTIONAL)
        value = entry.field.add(name="value", number=2, type=value_type, label=F.LABEL_OPTIONAL)
        if value_type_name:
            value.type_name = value_type_name
        add(map_name, F.TYPE_MESSAGE, F.LABEL_REPEATED, type_name=f".{PACKAGE}.Everything.{entry.name}")
    pool.Add(fp)
    found = pool.FindMessageTypeByName(name)
    return found


def _collect(strategy: st.SearchStrategy[Any], examples: int = 400) -> list[Any]:
    seen: list[Any] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(value: Any) -> None:
        seen.append(value)

    draw()
    return seen


def test_wild_messages_reach_every_kind_of_field_and_its_edges() -> None:
    descriptor = _everything()
    messages = _collect(MessageStrategies().wild(descriptor))
    cls = message_factory.GetMessageClass(descriptor)
    set_fields: Counter[str] = Counter()
    oneof_members: Counter[str] = Counter()
    edges: Counter[str] = Counter()
    for message in messages:
        assert cls.FromString(message.SerializeToString()) == message  # always a well-formed message
        set_fields.update(fd.name for fd, _ in message.ListFields())
        if (member := message.WhichOneof("choice")) is not None:
            oneof_members[member] += 1
        edges["nan"] += math.isnan(message.f_double)
        edges["infinite float"] += math.isinf(message.f_float)
        edges["int64 min"] += message.f_int64 == -(2**63)
        edges["uint64 max"] += message.f_uint64 == 2**64 - 1
        edges["negative int32"] += message.f_int32 < 0
        edges["NUL"] += "\x00" in message.f_string
        edges["empty string set"] += message.HasField("choice_text") and message.choice_text == ""
        edges["huge string"] += any(len(s) > 60_000 for s in [message.f_string, *message.names])
        edges["non-ASCII"] += any(ord(c) > 0xFFFF for c in message.f_string)
        edges["unknown enum"] += message.colour not in (0, 1)
        edges["nested twice"] += message.inner.child.HasField("child")
        edges["timestamp past 9999"] += message.when.seconds > TIMESTAMP_MAX_S
        edges["timestamp bad nanos"] += not 0 <= message.when.nanos < 1_000_000_000
        edges["duration past 10000 years"] += abs(message.how_long.seconds) > DURATION_MAX_S
        edges["unknown mask path"] += any(p not in ("label", "child") for p in message.mask.paths)
        edges["map of messages"] += len(message.by_name) > 0
        edges["map of strings"] += len(message.by_number) > 0
        edges["optional set to zero"] += message.HasField("maybe") and message.maybe == 0
    never_set = {fd.name for fd in descriptor.fields} - set(set_fields)
    assert not never_set, f"never set: {never_set}"
    assert set(oneof_members) == {"choice_text", "choice_inner"}
    missing = [edge for edge, n in edges.items() if n == 0]
    assert not missing, f"never generated: {missing}"


def test_well_known_types_are_generated_as_their_own_classes() -> None:
    messages = _collect(MessageStrategies().wild(_everything()), examples=50)
    assert all(isinstance(m.when, timestamp_pb2.Timestamp) for m in messages)
    assert all(isinstance(m.how_long, duration_pb2.Duration) for m in messages)
    assert all(isinstance(m.mask, field_mask_pb2.FieldMask) for m in messages)


@pytest.mark.parametrize("rpc", all_rpcs(), ids=str)
def test_valid_requests_pass_the_contract_rules(rpc: Rpc) -> None:
    for message in _collect(MessageStrategies().valid(rpc.input), examples=25):
        assert violations_of(message) == (), message
        assert malformed_times(message) == [] and strings_with_nul(message) == []


def test_nearly_valid_requests_break_one_field_at_most() -> None:
    rpc = next(r for r in all_rpcs() if r.method == "CreateReservation")
    roots: Counter[int] = Counter()
    for message in _collect(MessageStrategies().nearly_valid(rpc.input)):
        broken = {v.field.split(".")[0].split("[")[0] for v in violations_of(message)}
        broken |= {v.field.split(".")[0].split("[")[0] for v in (*malformed_times(message), *strings_with_nul(message))}
        roots[len(broken)] += 1
    assert set(roots) <= {0, 1}, roots
    assert roots[0] and roots[1], roots  # some mutations stay valid (a cleared optional), most do not


def test_hints_steer_the_valid_mode() -> None:
    rpc = next(r for r in all_rpcs() if r.method == "GetMovie")
    builder = MessageStrategies(Hints({"movie_id": st.just("0b9e6a3e-61a5-4fb7-9c3a-9a1d6a0f3f11")}))
    assert {m.movie_id for m in _collect(builder.valid(rpc.input), examples=10)} == {
        "0b9e6a3e-61a5-4fb7-9c3a-9a1d6a0f3f11"
    }


def test_raw_payloads_mix_undecodable_bytes_with_requests() -> None:
    rpc = next(r for r in all_rpcs() if r.method == "CreateReservation")
    parses: Counter[str] = Counter()
    for payload in _collect(raw_payloads(MessageStrategies(), rpc.input), examples=200):
        try:
            rpc.input_class.FromString(payload)
            parses["request"] += 1
        except DecodeError:
            parses["undecodable"] += 1
    assert parses["request"] > 0 and parses["undecodable"] > 0, parses


def test_requests_are_messages_of_the_method_input_type() -> None:
    for rpc in all_rpcs():
        for message in _collect(MessageStrategies().requests(rpc.input), examples=5):
            assert isinstance(message, Message) and message.DESCRIPTOR.full_name == rpc.input.full_name
