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
    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap_unary(behavior: _UnaryBehavior, around: Around) -> _UnaryBehavior:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with around(context):
            return await behavior(request, context)

    return unary


def _wrap_streaming(
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any], around: Around
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async with around(context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                # A handler that writes with `context.write()` instead of yielding (e.g. health Watch).
                await result
            else:
                async for response in result:
                    yield response

    return streaming
