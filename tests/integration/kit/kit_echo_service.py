"""A tiny test service for the kit: handlers on well-known protobuf messages, no generated code.

Used in-process by the integration tests and as a separate process (run this file) by the
graceful-shutdown test (`python tests/integration/kit/kit_echo_service.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from google.protobuf import empty_pb2, wrappers_pb2

from services.kit import errors
from services.kit.auth import current_caller
from services.kit.caller import require_role

SERVICE = "cinema.kit.test.v1.Echo"
PUBLIC_METHODS = (f"/{SERVICE}/Public",)


def _name(caller_subject: str | None) -> str:
    return caller_subject or "anonymous"


async def echo(request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    return wrappers_pb2.StringValue(value=f"{request.value} from {_name(current_caller().subject)}")


async def public(request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    return wrappers_pb2.StringValue(value=_name(current_caller().subject))


async def manager_only(request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    caller = require_role(current_caller(), "manager")
    return wrappers_pb2.StringValue(value=_name(caller.subject))


async def fail(request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    kind = request.value
    if kind == "invalid":
        raise errors.InvalidArgument.for_field("seats", "must not be empty")
    if kind == "not_found":
        raise errors.NotFound("screening", "s-1")
    if kind == "exists":
        raise errors.AlreadyExists("reservation", "r-1")
    if kind == "precondition":
        raise errors.FailedPrecondition("seat A1 is taken", "SEAT_TAKEN", {"seat": "A1"})
    if kind == "denied":
        raise errors.PermissionDenied("not yours")
    if kind == "unavailable":
        raise errors.Unavailable("payment is down", retry_after_s=2.5, reason="PAYMENT_UNAVAILABLE")
    raise RuntimeError("database password is hunter2 at 10.0.0.7")


async def slow(request: wrappers_pb2.DoubleValue, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await asyncio.sleep(request.value)
    return wrappers_pb2.StringValue(value="done")


async def count(request: wrappers_pb2.Int32Value, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
    for i in range(request.value):
        yield wrappers_pb2.Int32Value(value=i)
    if request.value > 3:
        raise errors.FailedPrecondition("too many", "TOO_MANY")


def _unary(behavior: Any, request_type: Any) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=request_type.FromString, response_serializer=lambda m: m.SerializeToString()
    )


def register(server: grpc.aio.Server) -> list[str]:
    handlers = {
        "Echo": _unary(echo, wrappers_pb2.StringValue),
        "Public": _unary(public, empty_pb2.Empty),
        "ManagerOnly": _unary(manager_only, empty_pb2.Empty),
        "Fail": _unary(fail, wrappers_pb2.StringValue),
        "Slow": _unary(slow, wrappers_pb2.DoubleValue),
        "Count": grpc.unary_stream_rpc_method_handler(
            count,
            request_deserializer=wrappers_pb2.Int32Value.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return [SERVICE]


def method(channel: grpc.aio.Channel, name: str, response_type: Any = wrappers_pb2.StringValue) -> Any:
    """A unary-unary callable for one method of the test service."""
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )


if __name__ == "__main__":
    from services.kit.server import run_service
    from services.kit.settings import KitSettings

    run_service(KitSettings(), register=register, public_methods=PUBLIC_METHODS)
