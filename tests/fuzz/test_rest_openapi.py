"""Schemathesis over the REST edge: every operation of the gateway's OpenAPI document, sent
through the Envoy ingress of a whole local stack, as a customer and (for the catalog's writes)
as a manager.

For each operation schemathesis draws requests from the document (positive: what the schema
allows; negative: what it forbids) and each answer must be clean (tests/fuzz/rest_stack.py):
no 5xx but a 503 with a google.rpc.Status body (a service down; 429 from the ingress' rate limit
is let through), every error a google.rpc.Status with a readable message (the rules of
tests/fuzz/checks.py), and, where schemathesis can tell, the answer conforms to the document
(status code documented, content type, body schema: `default` is google.rpc.Status). No service,
the gateway nor identity logs a traceback or an ERROR line. After the run the store invariants
hold (tests/fuzz/invariants.py): no partial write.

Bounded for `make test`: a fixed seed, no example database, no shrinking (a live server makes
it slow; the failing request is printed as sent), 5 examples per operation and mode.
`CINEMA_REST_FUZZ_EXAMPLES=100` raises the count; `CINEMA_REST_FUZZ_SEED=<int>` draws others.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scripts.stack import edge
from tests.fuzz.invariants import all_problems
from tests.fuzz.rest_stack import (
    RestStack,
    answer_problems,
    new_log_problems,
    status_body,
)
from tests.support.scratch_stack import scratch_stack

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CINEMA_REST_FUZZ_EXAMPLES", "5"))
SEED = int(os.environ.get("CINEMA_REST_FUZZ_SEED", "20261125"))
CALL_TIMEOUT_S = 15.0
SCHEMA_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# The catalog's writes: only a manager gets past authorization into their use cases.
MANAGER_OPERATIONS = frozenset(
    {
        "MovieService_CreateMovie",
        "MovieService_UpdateMovie",
        "MovieService_DeleteMovie",
        "MovieService_ScheduleScreening",
        "MovieService_CancelScreening",
        "MovieService_RescheduleScreening",
    }
)


@pytest.fixture(scope="module")
def rest_stack() -> Iterator[RestStack]:
    with scratch_stack("rest-fuzz", RestStack) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(rest_stack: RestStack) -> schemathesis.BaseSchema:
    reply = httpx.get(f"{rest_stack.base}/openapi.json", timeout=30)
    assert reply.status_code == 200, reply.text[:1000]
    return schemathesis.openapi.from_dict(undotted_path_parameters(reply.json()))


def undotted_path_parameters(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each dotted path parameter renamed (`{movie.id}` -> `{movie_id}`).

    grpc-gateway names a path parameter after the request field it fills, `movie.id` for a
    nested one (UpdateMovie); schemathesis 4.32 formats paths with `str.format`, which reads
    `{movie.id}` as an attribute lookup and reports the operation as an invalid schema. The
    name is not part of the URL, so the rename tests the same route.
    """
    paths: dict[str, Any] = {}
    for path, operations in document["paths"].items():
        for dotted in re.findall(r"\{([\w]+(?:\.[\w]+)+)\}", path):
            plain = dotted.replace(".", "_")
            path = path.replace(f"{{{dotted}}}", f"{{{plain}}}")
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "path" and parameter.get("name") == dotted:
                        parameter["name"] = plain
        paths[path] = operations
    return {**document, "paths": paths}


def _operations(api: schemathesis.BaseSchema) -> list[Any]:
    operations, invalid = [], []
    for result in api.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            invalid.append(f"{result.err().method} {result.err().path}: {result.err()}")
    assert not invalid, "schemathesis cannot test: " + "; ".join(invalid)
    assert operations, "the OpenAPI document has no operation"
    return operations


def _fuzz(stack: RestStack, api: schemathesis.BaseSchema, headers: dict[str, str], only: frozenset[str] | None) -> str:
    """Run every operation (or those named in `only`) in both modes; fail with every problem found."""
    session = requests.Session()
    problems: list[str] = []
    outcomes: dict[str, Counter[int]] = {}
    unsatisfiable: list[str] = []
    cursors = stack.log_cursors()
    operations = [op for op in _operations(api) if only is None or api.get_operation_id(op) in only]
    if only is not None:
        assert {api.get_operation_id(op) for op in operations} == only, "an operation left the document"
    for operation in operations:
        label = operation.label
        outcome = outcomes.setdefault(label, Counter())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            send = _sender(stack, session, headers, outcome, f"{label} ({mode.value})", problems)
            test = given(case=operation.as_strategy(generation_mode=mode))(send)
            test = settings(
                max_examples=EXAMPLES,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking against a live server
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )(test)
            try:
                seed(SEED)(test)()
            except Unsatisfiable:
                # nothing in the document to violate (e.g. only optional, unconstrained fields)
                if mode is GenerationMode.POSITIVE:
                    problems.append(f"{label}: schemathesis could not draw a valid request")
                unsatisfiable.append(f"{label} ({mode.value})")
    time.sleep(0.5)  # the last answers' log lines
    problems += new_log_problems(cursors)
    summary = "; ".join(f"{label}: {dict(c)}" for label, c in outcomes.items())
    summary += f"\nnothing to draw: {unsatisfiable}"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])
    return summary


def _sender(
    stack: RestStack,
    session: requests.Session,
    headers: dict[str, str],
    outcome: Counter[int],
    where: str,
    problems: list[str],
) -> Any:
    """Send one drawn request and note what is wrong with its answer."""

    def send(case: Any) -> None:
        response = case.call(base_url=stack.base, session=session, headers=headers, timeout=CALL_TIMEOUT_S)
        outcome[response.status_code] += 1
        found = answer_problems(response.status_code, response.headers, status_body(response), response.content)
        if not (response.status_code == 429 and response.headers.get("x-rate-limited")):
            try:
                case.validate_response(response, checks=SCHEMA_CHECKS, headers=headers)
            except FailureGroup as failures:
                found += [f"{type(f).__name__}: {f.title}: {f.message[:300]}" for f in failures.exceptions]
        if found:
            sent = case.as_curl_command(headers={"Authorization": "Bearer <token>"})
            problems.append(f"{where}: {'; '.join(found)}\n    {sent[:600]}")

    return send


def test_every_operation_as_customer(rest_stack: RestStack, api: schemathesis.BaseSchema) -> None:
    summary = _fuzz(rest_stack, api, rest_stack.bearer(edge.DEMO_CUSTOMER), None)
    print(summary)  # how deep the requests got (-s or -rA)


def test_catalog_writes_as_manager(rest_stack: RestStack, api: schemathesis.BaseSchema) -> None:
    summary = _fuzz(rest_stack, api, rest_stack.bearer(edge.DEMO_MANAGER), MANAGER_OPERATIONS)
    print(summary)


def test_stores_hold_their_invariants_after_the_run(rest_stack: RestStack) -> None:
    # the outbox relays and consumers settle asynchronously: wait for them before reporting
    system = rest_stack.stores()
    deadline = time.monotonic() + 60
    problems = asyncio.run(all_problems(system))
    while problems and time.monotonic() < deadline:
        time.sleep(1)
        problems = asyncio.run(all_problems(system))
    assert not problems, "\n".join(problems)
