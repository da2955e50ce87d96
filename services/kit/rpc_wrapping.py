"""Wrapping grpc.aio method handlers: the plumbing shared by the kit's server interceptors.

An interceptor of the kit describes what happens *around* one RPC as an async context
manager (`Around`); `wrap_handler` applies it to any of the four RPC kinds, so the
interceptor itself never deals with unary/streaming differences. The wrapper runs inside
the RPC's own task, which is why context variables (caller, correlation) set there are
visible to the handler.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import grpc.aio

# Strings: grpc.aio.ServicerContext is generic only in the type stubs.
Around: TypeAlias = "Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]"
_UnaryBehavior: TypeAlias = "Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]"


def wrap_handler(handler: grpc.RpcMethodHandler[Any, Any] | None, around: Around) -> Any:
    """Return `handler` with its behaviour run inside `around(context)`; None stays None (unknown method)."""
    if handler is None:
        return None
    # The stubs type behaviours for the sync server; on grpc.aio they are coroutines or async generators.
    behavior: Any
    if handler.response_streaming:
        behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream
        factory = (
            grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        )
        wrapped: Any = _wrap_streaming(behavior, around)
    else:
        behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary
        factory = (
            grpc.stream_unary_rpc_method_handler if handler.request_streaming else grpc.unary_unary_rpc_method_handler
        )
        wrapped = _wrap_unary(behavior, around)
    deserializer = handler.request_deserializer
    if not handler.request_streaming:
        deserializer = _tolerant(deserializer)
    return factory(
        wrapped,
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes are not a message of the method's request type. grpc.aio would
    answer UNKNOWN and log a traceback at ERROR for each one; the wrapper answers
    INVALID_ARGUMENT instead, which is what the caller did wrong."""

    message: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None or getattr(deserializer, "tolerant", False):
        return deserializer
    owner = getattr(deserializer, "__self__", None)  # `Message.FromString` of the request type
    type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "the request")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # DecodeError, or anything a parser raises on garbage
            return Undecodable(f"the request is not a valid {type_name} message ({error})"[:500])

    deserialize.tolerant = True  # type: ignore[attr-defined]
    return deserialize


def _wrap_unary(behavior: _UnaryBehavior, around: Around) -> _UnaryBehavior:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        async with around(context):
            return await behavior(request, context)

    return unary


def _wrap_streaming(
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any], around: Around
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):  # unary request, streamed response
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        async with around(context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                # A handler that writes with `context.write()` instead of yielding (e.g. health Watch).
                await result
            else:
                async for response in result:
                    yield response

    return streaming
