#!/usr/bin/env python3
"""Vendor buf/validate/validate.proto offline, from the descriptor that the protovalidate wheel embeds.

Why: the contracts use protovalidate rules (`buf.validate.field`), but the BSR is unreachable and no
package ships validate.proto as text. The protovalidate 2.1.0 wheel (Apache-2.0) carries the serialized
FileDescriptorProto of buf/validate/validate.proto in `protovalidate/_gen/buf/validate/validate_pb.py`
(the bytes literal given to `file_desc(`). This script turns that descriptor back into .proto text:
messages, enums, oneofs, extensions, extension and reserved ranges, reserved names, file options and
field options (the `(buf.validate.predefined)` CEL rules, printed with text_format).

Usage (run with .venv/bin/python from the repository root):
  scripts/vendor_validate_proto.py --wheel protovalidate-2.1.0-*.whl   # extract, save descriptor, write .proto
  scripts/vendor_validate_proto.py                                     # rewrite .proto from the saved descriptor
  scripts/vendor_validate_proto.py --check                             # exit 1 if the .proto is not what it would write

Get the wheel with `pip download --no-deps protovalidate==2.1.0`. The saved descriptor
(third_party/buf/validate/validate.descriptor.binpb) lets tests prove that compiling the text gives the
same descriptor, without a download.
"""

from __future__ import annotations

import argparse
import ast
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    text_encoding,
    text_format,
    timestamp_pb2,
)
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parent.parent
PROTO_OUT = ROOT / "third_party" / "buf" / "validate" / "validate.proto"
DESCRIPTOR_OUT = ROOT / "third_party" / "buf" / "validate" / "validate.descriptor.binpb"
WHEEL_MEMBER = "protovalidate/_gen/buf/validate/validate_pb.py"
SOURCE_PACKAGE = "protovalidate==2.1.0 (PyPI)"

FDP = descriptor_pb2.FieldDescriptorProto
_SCALAR_TYPES = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}
_LABELS = {FDP.LABEL_OPTIONAL: "optional", FDP.LABEL_REQUIRED: "required", FDP.LABEL_REPEATED: "repeated"}
_MAX_FIELD_NUMBER = 536870911  # 2^29 - 1, spelled `max` in .proto


def descriptor_bytes_from_wheel(wheel: Path) -> bytes:
    """The serialized FileDescriptorProto: the first (bytes) argument of the `file_desc(...)` call."""
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read(WHEEL_MEMBER).decode("utf-8")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "file_desc"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            return node.args[0].value
    raise SystemExit(f"no file_desc(b'...') call in {wheel}:{WHEEL_MEMBER}")


def build_pool(file_proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pool.DescriptorPool:
    """A private pool holding validate.proto and its imports, so its custom options can be decoded."""
    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        dep = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(dep)
        pool.Add(dep)
    pool.Add(file_proto)
    return pool


def default_json_name(name: str) -> str:
    """protoc's default json_name: drop underscores, upper-case the letter after each."""
    out: list[str] = []
    upper_next = False
    for ch in name:
        if ch == "_":
            upper_next = True
        elif upper_next:
            out.append(ch.upper())
            upper_next = False
        else:
            out.append(ch)
    return "".join(out)


class Printer:
    """Renders one FileDescriptorProto as .proto source (proto2/proto3 files without groups or maps)."""

    def __init__(self, file_proto: descriptor_pb2.FileDescriptorProto) -> None:
        self.file = file_proto
        self.pool = build_pool(file_proto)
        self.lines: list[str] = []

    # -- options -------------------------------------------------------------------------------------

    def _decoded(self, options: Message) -> Message:
        """Re-parse an options message with the private pool so extensions show up as fields."""
        full_name = options.DESCRIPTOR.full_name
        cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))
        decoded: Message = cls.FromString(options.SerializeToString())
        return decoded

    def _value_text(self, field: FieldDescriptor, value: object, indent: str) -> str:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert isinstance(value, Message)
            body = text_format.MessageToString(value, descriptor_pool=self.pool)
            inner = "".join(f"{indent}  {line}\n" for line in body.splitlines())
            return "{\n" + inner + indent + "}"
        if field.type == FieldDescriptor.TYPE_ENUM:
            assert isinstance(value, int) and field.enum_type is not None
            return field.enum_type.values_by_number[value].name
        if field.type == FieldDescriptor.TYPE_BOOL:
            return "true" if value else "false"
        if field.type == FieldDescriptor.TYPE_STRING:
            assert isinstance(value, str)
            return '"' + text_encoding.CEscape(value, as_utf8=True) + '"'  # type: ignore[arg-type]  # str works too
        if field.type == FieldDescriptor.TYPE_BYTES:
            assert isinstance(value, bytes)
            return '"' + text_encoding.CEscape(value, as_utf8=False) + '"'
        return repr(value)

    def option_assignments(self, options: Message, indent: str) -> list[str]:
        """`name = value` strings for every set option, extensions as `(full.name)`."""
        out: list[str] = []
        for field, value in self._decoded(options).ListFields():
            name = f"({field.full_name})" if field.is_extension else field.name
            values = list(value) if field.is_repeated else [value]
            out.extend(f"{name} = {self._value_text(field, v, indent)}" for v in values)
        return out

    # -- output --------------------------------------------------------------------------------------

    def emit(self, indent: str, text: str) -> None:
        self.lines.append(f"{indent}{text}" if text else "")

    def type_name(self, name: str) -> str:
        prefix = f".{self.file.package}."
        return name[len(prefix) :] if name.startswith(prefix) else name.lstrip(".")

    def field_decl(self, f: descriptor_pb2.FieldDescriptorProto, indent: str, in_oneof: bool) -> str:
        if f.type in (FDP.TYPE_GROUP,):
            raise SystemExit(f"groups are not supported: {f.name}")
        is_named_type = f.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM)
        type_text = self.type_name(f.type_name) if is_named_type else _SCALAR_TYPES[f.type]
        label = ""
        explicit_label = f.label == FDP.LABEL_REPEATED or self.file.syntax in ("", "proto2") or f.proto3_optional
        if not in_oneof and explicit_label:
            label = _LABELS[f.label] + " "
        opts: list[str] = []
        if f.HasField("default_value"):
            if f.type == FDP.TYPE_STRING:
                escaped = text_encoding.CEscape(f.default_value, as_utf8=True)  # type: ignore[arg-type]  # str works too
                opts.append(f'default = "{escaped}"')
            elif f.type == FDP.TYPE_BYTES:
                opts.append(f'default = "{f.default_value}"')  # already C-escaped in the descriptor
            else:
                opts.append(f"default = {f.default_value}")
        if f.HasField("json_name") and f.json_name != default_json_name(f.name):
            opts.append(f'json_name = "{f.json_name}"')
        if f.HasField("options"):
            opts.extend(self.option_assignments(f.options, indent + "  "))
        decl = f"{label}{type_text} {f.name} = {f.number}"
        if not opts:
            return decl + ";"
        if len(opts) == 1 and "\n" not in opts[0]:
            return f"{decl} [{opts[0]}];"
        inner = ",\n".join(f"{indent}  {o}" for o in opts)
        return f"{decl} [\n{inner}\n{indent}];"

    def emit_options(self, options: Message, indent: str) -> None:
        for assignment in self.option_assignments(options, indent):
            self.emit(indent, f"option {assignment};")

    @staticmethod
    def ranges(pairs: Iterator[tuple[int, int]]) -> str:
        parts = []
        for start, end in pairs:
            if end == _MAX_FIELD_NUMBER:
                parts.append(f"{start} to max")
            elif start == end:
                parts.append(str(start))
            else:
                parts.append(f"{start} to {end}")
        return ", ".join(parts)

    def emit_enum(self, e: descriptor_pb2.EnumDescriptorProto, indent: str) -> None:
        self.emit(indent, f"enum {e.name} {{")
        inner = indent + "  "
        if e.HasField("options"):
            self.emit_options(e.options, inner)
        for v in e.value:
            opts = self.option_assignments(v.options, inner + "  ") if v.HasField("options") else []
            suffix = f" [{', '.join(opts)}]" if opts else ""
            self.emit(inner, f"{v.name} = {v.number}{suffix};")
        if e.reserved_range:  # enum reserved ranges are inclusive
            self.emit(inner, f"reserved {self.ranges((r.start, r.end) for r in e.reserved_range)};")
        if e.reserved_name:
            self.emit(inner, "reserved " + ", ".join(f'"{n}"' for n in e.reserved_name) + ";")
        self.emit(indent, "}")

    def emit_message(self, m: descriptor_pb2.DescriptorProto, indent: str) -> None:
        if m.options.map_entry:
            raise SystemExit(f"map fields are not supported: {m.name}")
        self.emit(indent, f"message {m.name} {{")
        inner = indent + "  "
        if m.HasField("options"):
            self.emit_options(m.options, inner)
        for nested_enum in m.enum_type:
            self.emit_enum(nested_enum, inner)
        for nested in m.nested_type:
            self.emit_message(nested, inner)
        # Fields in declaration order; a real oneof is printed as a block where its first field appears.
        real_oneofs = {i for i, _ in enumerate(m.oneof_decl)} - {
            f.oneof_index for f in m.field if f.HasField("oneof_index") and f.proto3_optional
        }
        printed_oneofs: set[int] = set()
        for f in m.field:
            if f.HasField("oneof_index") and f.oneof_index in real_oneofs:
                if f.oneof_index in printed_oneofs:
                    continue
                printed_oneofs.add(f.oneof_index)
                decl = m.oneof_decl[f.oneof_index]
                self.emit(inner, f"oneof {decl.name} {{")
                if decl.HasField("options"):
                    self.emit_options(decl.options, inner + "  ")
                for member in m.field:
                    if member.HasField("oneof_index") and member.oneof_index == f.oneof_index:
                        self.emit(inner + "  ", self.field_decl(member, inner + "  ", in_oneof=True))
                self.emit(inner, "}")
            else:
                self.emit(inner, self.field_decl(f, inner, in_oneof=False))
        for r in m.extension_range:
            opts = self.option_assignments(r.options, inner) if r.HasField("options") else []
            suffix = f" [{', '.join(opts)}]" if opts else ""
            self.emit(inner, f"extensions {self.ranges(iter([(r.start, r.end - 1)]))}{suffix};")
        if m.reserved_range:  # message reserved ranges are end-exclusive in the descriptor
            self.emit(inner, f"reserved {self.ranges((r.start, r.end - 1) for r in m.reserved_range)};")
        if m.reserved_name:
            self.emit(inner, "reserved " + ", ".join(f'"{n}"' for n in m.reserved_name) + ";")
        for ext in m.extension:
            self.emit_extensions([ext], inner)
        self.emit(indent, "}")

    def emit_extensions(self, extensions: list[descriptor_pb2.FieldDescriptorProto], indent: str) -> None:
        for ext in extensions:
            self.emit(indent, f"extend {self.type_name(ext.extendee)} {{")
            self.emit(indent + "  ", self.field_decl(ext, indent + "  ", in_oneof=False))
            self.emit(indent, "}")

    def render(self, header: str) -> str:
        fd = self.file
        self.lines = header.splitlines()
        self.emit("", "")
        self.emit("", f'syntax = "{fd.syntax or "proto2"}";')
        self.emit("", "")
        self.emit("", f"package {fd.package};")
        self.emit("", "")
        for i, dep in enumerate(fd.dependency):
            kind = "public " if i in fd.public_dependency else "weak " if i in fd.weak_dependency else ""
            self.emit("", f'import {kind}"{dep}";')
        self.emit("", "")
        self.emit_options(fd.options, "")
        for ext in fd.extension:
            self.emit("", "")
            self.emit_extensions([ext], "")
        for e in fd.enum_type:
            self.emit("", "")
            self.emit_enum(e, "")
        for m in fd.message_type:
            self.emit("", "")
            self.emit_message(m, "")
        for s in fd.service:
            raise SystemExit(f"services are not supported: {s.name}")
        return "\n".join(self.lines) + "\n"


HEADER = f"""\
// Copyright 2023-2026 Buf Technologies, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//      http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.
//
// GENERATED FILE, DO NOT EDIT. Reconstructed by scripts/vendor_validate_proto.py from the serialized
// FileDescriptorProto of buf/validate/validate.proto embedded in {SOURCE_PACKAGE},
// file {WHEEL_MEMBER} (saved next to this file as validate.descriptor.binpb).
// Comments of the original are not in the descriptor and so are not reproduced here; the
// documentation is at https://protovalidate.com. Compiling this file yields the same descriptor
// (tests/contract/test_protos.py checks it)."""


def render(descriptor: bytes) -> str:
    return Printer(descriptor_pb2.FileDescriptorProto.FromString(descriptor)).render(HEADER)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="protovalidate 2.1.0 wheel to extract the descriptor from")
    parser.add_argument("--descriptor", type=Path, default=DESCRIPTOR_OUT, help="saved descriptor to render")
    parser.add_argument("--out", type=Path, default=PROTO_OUT, help="where to write validate.proto")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    args = parser.parse_args(argv)

    if args.wheel is not None:
        descriptor = descriptor_bytes_from_wheel(args.wheel)
        if not args.check:
            args.descriptor.parent.mkdir(parents=True, exist_ok=True)
            args.descriptor.write_bytes(descriptor)
    else:
        descriptor = args.descriptor.read_bytes()
    text = render(descriptor)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run scripts/vendor_validate_proto.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
