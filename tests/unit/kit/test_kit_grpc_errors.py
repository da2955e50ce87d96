"""Each domain error maps to one gRPC code with the agreed google.rpc details; the client helper reads them back."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from services.kit import errors
from services.kit.grpc_errors import (
    ERROR_DOMAIN,
    domain_error_grpc_status,
    domain_error_status,
    error_details,
    find_detail,
)


@dataclass
class FinishedCall:
    """What a failed call exposes to `rpc_status.from_call` (code, details, trailers)."""

    status: grpc.Status

    def code(self) -> grpc.StatusCode:
        return self.status.code

    def details(self) -> str:
        return self.status.details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return tuple(self.status.trailing_metadata)


def round_trip(error: errors.DomainError) -> tuple[grpc.StatusCode, str, list[Message]]:
    status = domain_error_grpc_status(error)
    call = FinishedCall(status)
    return status.code, status.details, error_details(call)  # type: ignore[arg-type]


def test_invalid_argument_carries_bad_request_with_field_violations() -> None:
    error = errors.InvalidArgument(
        "bad seats",
        (errors.FieldViolation("seats[0]", "unknown seat"), errors.FieldViolation("seats[1]", "duplicate")),
    )
    code, message, details = round_trip(error)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == "bad seats"
    assert details == [
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="seats[0]", description="unknown seat"),
                error_details_pb2.BadRequest.FieldViolation(field="seats[1]", description="duplicate"),
            ]
        )
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound("screening", "s-1"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("reservation", "r-1"), grpc.StatusCode.ALREADY_EXISTS),
    ],
)
def test_resource_errors_carry_resource_info(
    error: errors.NotFound | errors.AlreadyExists, code: grpc.StatusCode
) -> None:
    got_code, message, details = round_trip(error)
    assert got_code is code
    assert message == error.message
    [info] = details
    assert isinstance(info, error_details_pb2.ResourceInfo)
    assert (info.resource_type, info.resource_name) == (error.resource_type, error.resource_name)


def test_failed_precondition_carries_error_info_with_reason_and_metadata() -> None:
    code, message, details = round_trip(errors.FailedPrecondition("seat A1 is taken", "SEAT_TAKEN", {"seat": "A1"}))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert message == "seat A1 is taken"
    assert details == [error_details_pb2.ErrorInfo(reason="SEAT_TAKEN", domain=ERROR_DOMAIN, metadata={"seat": "A1"})]


def test_permission_denied_and_unauthenticated_carry_error_info() -> None:
    code, _, details = round_trip(errors.PermissionDenied("managers only"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert details == [error_details_pb2.ErrorInfo(reason="PERMISSION_DENIED", domain=ERROR_DOMAIN)]
    code, message, _ = round_trip(errors.Unauthenticated("token expired"))
    assert (code, message) == (grpc.StatusCode.UNAUTHENTICATED, "token expired")


def test_unavailable_carries_retry_info_and_error_info() -> None:
    code, message, details = round_trip(errors.Unavailable("payment is down", retry_after_s=1.5, reason="PAYMENT_DOWN"))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert message == "payment is down"
    retry, info = details
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 1500
    assert info == error_details_pb2.ErrorInfo(reason="PAYMENT_DOWN", domain=ERROR_DOMAIN)


def test_rich_status_code_matches_grpc_code() -> None:
    for error in (errors.NotFound("movie", "m"), errors.Unavailable("x"), errors.InvalidArgument("x")):
        assert domain_error_status(error).code == domain_error_grpc_status(error).code.value[0]


def test_find_detail_and_missing_details() -> None:
    call = FinishedCall(domain_error_grpc_status(errors.FailedPrecondition("x", "PAYMENT_DECLINED")))
    info = find_detail(call, error_details_pb2.ErrorInfo)  # type: ignore[arg-type]
    assert info is not None and info.reason == "PAYMENT_DECLINED"
    assert find_detail(call, error_details_pb2.RetryInfo) is None  # type: ignore[arg-type]

    class PlainFailure:
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.INTERNAL

        def details(self) -> str:
            return "internal error"

        def trailing_metadata(self) -> tuple[()]:
            return ()

    assert error_details(PlainFailure()) == []  # type: ignore[arg-type]
