"""A tiny grpc.aio unary echo server: the ceiling of one Python gRPC server process on this machine.

Runs like the services do (its own process, uvloop when installed, 127.0.0.1 only) and does
nothing but return the request bytes, so the benchmark can put each service's throughput next
to what the transport alone allows. `python -m scripts.bench.echo_server --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc
import grpc.aio

METHOD = "/cinema.bench.v1.Echo/Echo"


async def _echo(request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "cinema.bench.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        import uvloop

        uvloop.run(serve(port))
    except ImportError:
        asyncio.run(serve(port))


if __name__ == "__main__":
    main()
