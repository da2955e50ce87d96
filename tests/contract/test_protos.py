"""The contracts in protos/: lint, breaking-change safety, generated code freshness, vendored imports.

Real `buf` (the pinned buf-bin wheel), offline; nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, message_factory

from scripts import vendor_validate_proto

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUF = BIN / "buf"
RELEASE = ROOT / "protos" / "releases" / "v1.binpb"
VALIDATE_DIR = ROOT / "third_party" / "buf" / "validate"


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=240, check=False)


def build_descriptor_set(tmp_path: Path, *args: str, cwd: Path = ROOT) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "image.binpb"
    result = run(BUF, "build", *args, "--as-file-descriptor-set", "--exclude-source-info", "-o", out, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def contracts(tmp_path_factory: pytest.TempPathFactory) -> list[descriptor_pb2.FileDescriptorProto]:
    """Our files (cinema/**) as compiled by buf from the protos module."""
    fds = build_descriptor_set(tmp_path_factory.mktemp("contracts"), "protos")
    return [f for f in fds.file if f.name.startswith("cinema/")]


def test_buf_lint_is_clean() -> None:
    result = run(BUF, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_are_buf_formatted() -> None:
    result = run(BUF, "format", "--diff", "--exit-code", "protos")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_the_release_baseline() -> None:
    result = run(BUF, "breaking", "protos", "--against", RELEASE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_breaking_check_catches_a_removed_field(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    for part in ("protos", "third_party"):
        shutil.copytree(ROOT / part, workspace / part, ignore=shutil.ignore_patterns("releases"))
    shutil.copy(ROOT / "buf.yaml", workspace / "buf.yaml")
    proto = workspace / "protos" / "cinema" / "reservation" / "v1" / "reservation.proto"
    field = "  string movie_title = 8 [(google.api.field_behavior) = OUTPUT_ONLY];\n"
    text = proto.read_text(encoding="utf-8")
    assert text.count(field) == 1
    proto.write_text(text.replace(field, ""), encoding="utf-8")

    result = run(BUF, "breaking", "protos", "--against", RELEASE, cwd=workspace)

    assert result.returncode != 0
    report = result.stdout + result.stderr
    assert 'field "8" with name "movie_title" on message "Reservation" was deleted' in report


def test_generated_code_is_fresh() -> None:
    result = run(sys.executable, ROOT / "scripts" / "genproto", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vendored_validate_proto_is_what_the_script_writes() -> None:
    result = run(sys.executable, ROOT / "scripts" / "vendor_validate_proto.py", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_reconstructed_validate_proto_compiles_to_the_original_descriptor(tmp_path: Path) -> None:
    workspace = tmp_path / "validate"
    (workspace / "buf" / "validate").mkdir(parents=True)
    shutil.copy(VALIDATE_DIR / "validate.proto", workspace / "buf" / "validate" / "validate.proto")
    (workspace / "buf.yaml").write_text("version: v2\n", encoding="utf-8")
    built = build_descriptor_set(tmp_path, "--exclude-imports", cwd=workspace)
    assert [f.name for f in built.file] == ["buf/validate/validate.proto"]

    original = descriptor_pb2.FileDescriptorProto.FromString((VALIDATE_DIR / "validate.descriptor.binpb").read_bytes())
    # Parse both with a pool that knows buf.validate's own extensions, so the (buf.validate.predefined)
    # CEL rules in field options are compared field by field, not as opaque unknown bytes whose
    # order may differ between compilers.
    pool = vendor_validate_proto.build_pool(original)
    file_proto_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("google.protobuf.FileDescriptorProto")
    )
    expected = file_proto_class.FromString(original.SerializeToString())
    actual = file_proto_class.FromString(built.file[0].SerializeToString())
    assert actual == expected


def _messages(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def visit(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        found[f"{prefix}.{message.name}"] = message
        for nested in message.nested_type:
            visit(f"{prefix}.{message.name}", nested)

    for f in files:
        for m in f.message_type:
            visit(f".{f.package}", m)
    return found


def _resolve(messages: dict[str, descriptor_pb2.DescriptorProto], type_name: str, path: str) -> bool:
    """Whether a dotted field path (`movie.id`) names a field of the message `type_name`."""
    message = messages[type_name]
    head, _, rest = path.partition(".")
    field = next((f for f in message.field if f.name == head), None)
    if field is None:
        return False
    if not rest:
        return True
    return field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE and _resolve(messages, field.type_name, rest)


def test_every_rpc_has_an_http_rule_whose_variables_and_body_are_request_fields(
    contracts: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    messages = _messages(contracts)
    methods = [(f"{f.package}.{s.name}", s, m) for f in contracts for s in f.service for m in s.method]
    assert len({service for service, _, _ in methods}) == 6
    problems: list[str] = []
    for service, _, method in methods:
        name = f"{service}.{method.name}"
        if not method.options.HasExtension(annotations_pb2.http):
            problems.append(f"{name}: no google.api.http")
            continue
        rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
        pattern_kind = rule.WhichOneof("pattern")
        if pattern_kind is None:
            problems.append(f"{name}: http rule without a verb")
            continue
        template: str = getattr(rule, pattern_kind)
        if not template.startswith("/v1/"):
            problems.append(f"{name}: {template} is not under /v1/")
        for segment in template.split("{")[1:]:
            variable = segment.split("}")[0].split("=")[0]
            if not _resolve(messages, method.input_type, variable):
                problems.append(f"{name}: path variable {variable} is not a request field")
        if rule.body not in ("", "*") and not _resolve(messages, method.input_type, rule.body):
            problems.append(f"{name}: body {rule.body} is not a request field")
        if pattern_kind in ("get", "delete") and rule.body:
            problems.append(f"{name}: {pattern_kind.upper()} with a body")
    assert not problems, "\n".join(problems)


def test_list_methods_paginate(contracts: list[descriptor_pb2.FileDescriptorProto]) -> None:
    messages = _messages(contracts)
    lists = [m for f in contracts for s in f.service for m in s.method if m.name.startswith("List")]
    assert lists
    for method in lists:
        request = {f.name for f in messages[method.input_type].field}
        response = {f.name for f in messages[method.output_type].field}
        assert {"page_size", "page_token"} <= request, method.name
        assert "next_page_token" in response, method.name


def test_every_domain_event_is_a_message(contracts: list[descriptor_pb2.FileDescriptorProto]) -> None:
    names = set(_messages(contracts))
    expected = {
        ".cinema.movie.v1.MovieRegistered",
        ".cinema.movie.v1.MovieUpdated",
        ".cinema.movie.v1.MovieDeleted",
        ".cinema.movie.v1.ScreeningScheduled",
        ".cinema.movie.v1.ScreeningRescheduled",
        ".cinema.movie.v1.ScreeningCancelled",
        ".cinema.reservation.v1.ReservationConfirmed",
        ".cinema.reservation.v1.ReservationCancelled",
        ".cinema.reservation.v1.ReservationFailed",
        ".cinema.payment.v1.PaymentAuthorized",
        ".cinema.payment.v1.PaymentDeclined",
        ".cinema.payment.v1.PaymentRefunded",
        ".cinema.review.v1.ReviewPosted",
        ".cinema.review.v1.ReviewDeleted",
        ".cinema.notification.v1.NotificationSent",
        ".cinema.events.v1.EventEnvelope",
    }
    assert expected <= names, expected - names


def test_generated_packages_import_from_the_installed_project(tmp_path: Path) -> None:
    # From a foreign working directory: only the editable install can put gen/python on the path.
    code = (
        "import grpc.aio\n"
        "from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc\n"
        "from buf.validate import validate_pb2\n"
        "stub = reservation_pb2_grpc.ReservationServiceStub(grpc.aio.insecure_channel('127.0.0.1:9'))\n"
        "print(reservation_pb2.CreateReservationRequest(seats=['A1']).seats[0], validate_pb2.FieldRules.__name__)\n"
    )
    result = run(sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["A1", "FieldRules"]
