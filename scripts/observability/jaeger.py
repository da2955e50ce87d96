"""Jaeger v2 on this machine: its configuration, its process, and reading traces back.

Jaeger v2 is an OpenTelemetry Collector distribution: one YAML file names the receivers
(OTLP over gRPC and HTTP), the in-memory trace store and the query extension (HTTP API and
UI). Everything listens on 127.0.0.1. The binary is built by `scripts/bootstrap` from the
module pinned in `scripts/tools/jaeger` into `.tools/bin/jaeger`; that build has no UI
assets (the Go module ships only a placeholder page), so traces are read through the HTTP
API — `python -m scripts.observability.trace RESERVATION_ID` prints one as a tree.

For `make up` (scripts/stack):

    from scripts.observability import jaeger
    spec = jaeger.JaegerSpec(DATA / "jaeger")          # default ports 14317 / 14318 / 16686
    components.append(jaeger.component(spec, LOGS / "jaeger.log"))
    env.update(jaeger.otlp_env("RESERVATION", spec))   # per service: <PREFIX>_OTLP_ENDPOINT

and print `spec.ui_url`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.stack.paths import go_tool
from scripts.stack.process import ManagedProcess, port_open


def _port(var: str, default: int) -> int:
    return int(os.environ.get(var, default))


# The variables a scratch stack must set too (scripts.stack.components.scratch_env)
PORT_VARIABLES = (
    "CINEMA_JAEGER_OTLP_GRPC_PORT",
    "CINEMA_JAEGER_OTLP_HTTP_PORT",
    "CINEMA_JAEGER_QUERY_PORT",
    "CINEMA_JAEGER_QUERY_GRPC_PORT",
)
OTLP_GRPC_PORT = _port("CINEMA_JAEGER_OTLP_GRPC_PORT", 14317)
OTLP_HTTP_PORT = _port("CINEMA_JAEGER_OTLP_HTTP_PORT", 14318)
QUERY_HTTP_PORT = _port("CINEMA_JAEGER_QUERY_PORT", 16686)
QUERY_GRPC_PORT = _port("CINEMA_JAEGER_QUERY_GRPC_PORT", 16685)

STORE = "memory"


@dataclass(frozen=True)
class JaegerSpec:
    """Where one Jaeger listens and keeps its files (only its config and log: traces live in memory)."""

    root: Path
    otlp_grpc_port: int = OTLP_GRPC_PORT
    otlp_http_port: int = OTLP_HTTP_PORT
    query_port: int = QUERY_HTTP_PORT
    query_grpc_port: int = QUERY_GRPC_PORT
    max_traces: int = 50_000
    host: str = field(default="127.0.0.1")

    @property
    def otlp_http_endpoint(self) -> str:
        """What a service's `<PREFIX>_OTLP_ENDPOINT` is set to (the kit appends /v1/traces)."""
        return f"http://{self.host}:{self.otlp_http_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"{self.host}:{self.otlp_grpc_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.query_port}"

    @property
    def config_path(self) -> Path:
        return self.root / "jaeger.yaml"


def config(spec: JaegerSpec) -> dict[str, Any]:
    """The Jaeger v2 (collector-style) configuration for `spec`, as a mapping."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                # The collector's own metrics would listen on a fixed port (8888): two
                # Jaegers (make up and a test run) must not collide, and we do not scrape them.
                "metrics": {"level": "none"},
                "logs": {"level": "info", "encoding": "json"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {STORE: {"memory": {"max_traces": spec.max_traces}}}},
            "jaeger_query": {
                "storage": {"traces": STORE},
                "http": {"endpoint": f"{spec.host}:{spec.query_port}"},
                "grpc": {"endpoint": f"{spec.host}:{spec.query_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": spec.otlp_grpc_endpoint},
                    "http": {"endpoint": f"{spec.host}:{spec.otlp_http_port}"},
                }
            }
        },
        # Small batches, flushed fast: a test reads a trace back a second after the request.
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": STORE}},
    }


def write_config(spec: JaegerSpec) -> Path:
    """Write `spec.config_path`. JSON is YAML, so no YAML library is needed at run time."""
    spec.root.mkdir(parents=True, exist_ok=True)
    spec.config_path.write_text(json.dumps(config(spec), indent=2) + "\n")
    return spec.config_path


def ready(spec: JaegerSpec) -> bool:
    """The query API answers and both OTLP receivers accept connections."""
    if not (port_open(spec.otlp_http_port, spec.host) and port_open(spec.otlp_grpc_port, spec.host)):
        return False
    try:
        with urllib.request.urlopen(f"{spec.ui_url}/api/services", timeout=1.0) as reply:  # noqa: S310 - our own 127.0.0.1
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def process(spec: JaegerSpec, log_path: Path) -> ManagedProcess:
    """The Jaeger process for `spec` (its config written now); `start()` then `wait_ready()`."""
    path = write_config(spec)
    return ManagedProcess(
        "jaeger",
        [str(go_tool("jaeger")), "--config", f"file:{path}"],
        log_path,
        lambda: ready(spec),
        env={"GOMAXPROCS": os.environ.get("GOMAXPROCS", "2")},
    )


def otlp_env(prefix: str, spec: JaegerSpec) -> dict[str, str]:
    """The environment that makes the service with variable prefix `prefix` export its spans here."""
    return {f"{prefix}_OTLP_ENDPOINT": spec.otlp_http_endpoint}


def component(spec: JaegerSpec, log_path: Path) -> Any:
    """A `scripts.stack.components.Component` for the supervisor of `make up`."""
    from scripts.stack.components import Component

    return Component(
        "jaeger",
        spec.ui_url,
        lambda: ready(spec),
        make_process=lambda: process(spec, log_path),
        note=f"traces (in memory): API {spec.ui_url}/api/traces, OTLP/HTTP {spec.otlp_http_endpoint}",
        ports=(spec.otlp_grpc_port, spec.otlp_http_port, spec.query_port, spec.query_grpc_port),
    )


# ------------------------------------------------------------------------- reading traces


class JaegerQuery:
    """A small client of Jaeger's HTTP query API (`/api/...`, the one its UI uses). Blocking:
    call it through `asyncio.to_thread` from async code."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self._base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self._timeout_s) as reply:  # noqa: S310 - our own Jaeger
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {"data": []}
            raise

    def services(self) -> list[str]:
        return list(self._get("/api/services").get("data") or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace in Jaeger's JSON (`spans`, `processes`), or None when Jaeger has none by that id."""
        data = self._get(f"/api/traces/{trace_id}").get("data") or []
        return data[0] if data else None

    def find(self, service: str, tags: dict[str, str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Traces with a span of `service` carrying all of `tags` (e.g. {"cinema.reservation_id": id})."""
        params = {"service": service, "limit": str(limit), "lookback": "1h"}
        if tags:
            params["tags"] = json.dumps(tags)
        return list(self._get("/api/traces", params).get("data") or [])


@dataclass
class TraceSpan:
    """One span of a trace read from Jaeger, with its service and parent resolved."""

    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    tags: dict[str, Any]
    start_us: int
    duration_us: int


def spans_of(trace: dict[str, Any]) -> dict[str, TraceSpan]:
    """The spans of a Jaeger trace by span id (CHILD_OF references give the parent)."""
    processes = trace.get("processes", {})
    spans: dict[str, TraceSpan] = {}
    for raw in trace.get("spans", []):
        tags = {t["key"]: t.get("value") for t in raw.get("tags", [])}
        parent = next((r["spanID"] for r in raw.get("references", []) if r.get("refType") == "CHILD_OF"), None)
        spans[raw["spanID"]] = TraceSpan(
            span_id=raw["spanID"],
            parent_id=parent,
            service=processes.get(raw.get("processID"), {}).get("serviceName", "?"),
            name=raw["operationName"],
            kind=str(tags.get("span.kind", "")),
            tags=tags,
            start_us=int(raw.get("startTime", 0)),
            duration_us=int(raw.get("duration", 0)),
        )
    return spans


def ancestors(spans: dict[str, TraceSpan], span: TraceSpan) -> list[TraceSpan]:
    """The chain of parents of `span`, nearest first (stops at a parent not in the trace)."""
    chain: list[TraceSpan] = []
    seen = {span.span_id}
    parent_id = span.parent_id
    while parent_id is not None and parent_id in spans and parent_id not in seen:
        parent = spans[parent_id]
        chain.append(parent)
        seen.add(parent_id)
        parent_id = parent.parent_id
    return chain


def render_tree(trace: dict[str, Any]) -> str:
    """The trace as an indented tree: service, span name, kind and duration per line."""
    spans = spans_of(trace)
    children: dict[str | None, list[TraceSpan]] = {}
    for span in spans.values():
        parent = span.parent_id if span.parent_id in spans else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_us):
            kind = f" [{span.kind}]" if span.kind else ""
            lines.append(f"{'  ' * depth}{span.service}: {span.name}{kind} {span.duration_us / 1000:.1f} ms")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
