"""The REST workload names a refusal by the gRPC status its google.rpc.Status body carries."""

from __future__ import annotations

import httpx

from scripts.bench.rest_workload import error_code


def test_a_status_body_names_the_grpc_code() -> None:
    reply = httpx.Response(503, json={"code": 14, "message": "the service is at capacity; retry after the hint"})
    assert error_code(reply) == "UNAVAILABLE"
    assert error_code(httpx.Response(429, json={"code": 8, "message": "slow down"})) == "RESOURCE_EXHAUSTED"


def test_anything_else_is_named_by_its_http_status() -> None:
    assert error_code(httpx.Response(502, text="upstream connect error")) == "HTTP_502"
    assert error_code(httpx.Response(500, json={"code": 999})) == "HTTP_500"
