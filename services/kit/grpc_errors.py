"""The one mapping from domain errors to gRPC statuses with `google.rpc` error details.

Server side: `domain_error_status` builds the rich status; `ErrorMappingInterceptor` turns a
`DomainError` raised by a handler into that status, and any other exception into INTERNAL
with a generic message (the traceback goes to the log, never to the client).
Client side: `error_details(err)` reads the details back from a `grpc.aio.AioRpcError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from services.kit import errors
from services.kit.rpc_wrapping import wrap_handler

log = logging.getLogger(__name__)

ERROR_DOMAIN = "cinema"
INTERNAL_MESSAGE = "internal error"

_CODES: tuple[tuple[type[errors.DomainError], int], ...] = (
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
)


def _code_of(error: errors.DomainError) -> int:
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return int(code)
    # A DomainError subclass nobody mapped: the request cannot be honoured as the system stands.
    return int(code_pb2.FAILED_PRECONDITION)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _details_of(error: errors.DomainError) -> list[Message]:
    if isinstance(error, errors.InvalidArgument):
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        ]
    if isinstance(error, errors.NotFound | errors.AlreadyExists):
        return [
            error_details_pb2.ResourceInfo(
                resource_type=error.resource_type, resource_name=error.resource_name, description=error.message
            )
        ]
    if isinstance(error, errors.FailedPrecondition):
        return [error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)]
    if isinstance(error, errors.Unavailable):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1_000_000_000))
        return [
            error_details_pb2.RetryInfo(retry_delay=delay),
            error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN),
        ]
    if isinstance(error, errors.PermissionDenied):
        return [error_details_pb2.ErrorInfo(reason="PERMISSION_DENIED", domain=ERROR_DOMAIN)]
    if isinstance(error, errors.Unauthenticated):
        return [error_details_pb2.ErrorInfo(reason="UNAUTHENTICATED", domain=ERROR_DOMAIN)]
    return [error_details_pb2.ErrorInfo(reason=type(error).__name__.upper(), domain=ERROR_DOMAIN)]


def domain_error_status(error: errors.DomainError) -> status_pb2.Status:
    """The `google.rpc.Status` (code, message, details) a domain error stands for."""
    return status_pb2.Status(
        code=_code_of(error), message=error.message, details=[_pack(d) for d in _details_of(error)]
    )


def domain_error_grpc_status(error: errors.DomainError) -> grpc.Status:
    """The same status as a `grpc.Status` (code, details, trailers with `grpc-status-details-bin`)."""
    status: grpc.Status = rpc_status.to_status(domain_error_status(error))
    return status


async def abort_with_domain_error(context: grpc.aio.ServicerContext[Any, Any], error: errors.DomainError) -> None:
    """End the RPC with the status of `error` (raises, as `context.abort` does)."""
    status = domain_error_grpc_status(error)
    # `abort` rather than `abort_with_status`: the tracing interceptor's context records the code only there.
    await context.abort(status.code, status.details, status.trailing_metadata)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Maps exceptions escaping a handler: DomainError -> its status, anything else -> INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method

        @asynccontextmanager
        async def mapping_errors(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            try:
                yield
            except grpc.aio.AbortError:
                raise  # the handler already chose its status
            except errors.DomainError as error:
                log.info("rpc failed: %s", error.message, extra={"rpc_method": method, "error": type(error).__name__})
                await abort_with_domain_error(context, error)
            except Exception:
                log.exception("unexpected error in rpc", extra={"rpc_method": method})
                await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

        return wrap_handler(await continuation(handler_call_details), mapping_errors)


# Detail types the kit knows how to unpack from a status; others are returned as `Any`.
_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.QuotaFailure,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
    error_details_pb2.RequestInfo,
)

M = TypeVar("M", bound=Message)


def rich_status(err: grpc.aio.AioRpcError | grpc.RpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` carried in the trailers of a failed call, if the server sent one."""
    try:
        status: status_pb2.Status | None = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:
        return None  # trailers disagree with the call status: treat as no rich status
    return status


def error_details(err: grpc.aio.AioRpcError | grpc.RpcError) -> list[Message]:
    """The error details of a failed call, unpacked into their message types (unknown ones stay `Any`)."""
    status = rich_status(err)
    if status is None:
        return []
    details: list[Message] = []
    for packed in status.details:
        for detail_type in _DETAIL_TYPES:
            if packed.Is(detail_type.DESCRIPTOR):
                detail = detail_type()
                packed.Unpack(detail)
                details.append(detail)
                break
        else:
            details.append(packed)
    return details


def find_detail(err: grpc.aio.AioRpcError | grpc.RpcError, detail_type: type[M]) -> M | None:
    """The first detail of the given type (e.g. `ErrorInfo`) in a failed call, or None."""
    for detail in error_details(err):
        if isinstance(detail, detail_type):
            return detail
    return None


def retry_delay_s(err: grpc.aio.AioRpcError | grpc.RpcError) -> float | None:
    """The server's hint for retrying an UNAVAILABLE call (its `RetryInfo`), in seconds; None when
    the call is not to be retried as it is (another code, or no hint)."""
    if err.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    info = find_detail(err, error_details_pb2.RetryInfo)
    return info.retry_delay.ToTimedelta().total_seconds() if info is not None else None
