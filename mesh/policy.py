"""The mesh policy as the chart's values state it, read into typed values both renderers share.

`load(values.yaml)` gives a `MeshPolicy`: per service its protocol, port and traffic policy
(durations in milliseconds), and the edge policy of the ingress (issuer, public gRPC methods,
public edge paths, rate limit). `public_rest_routes()` derives the REST twins of the public gRPC
methods from their `google.api.http` rules in the generated descriptors, so the list of public
gRPC methods is the only list a person edits.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pool

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VALUES = REPO / "helm" / "cinema" / "values.yaml"

_DURATION = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


class PolicyError(ValueError):
    """The values do not describe a policy the renderers can express."""


def duration_ms(text: str) -> int:
    """An Istio duration (`800ms`, `3s`, `1.5s`, `1m`) in whole milliseconds."""
    match = _DURATION.match(str(text).strip())
    if match is None:
        raise PolicyError(f"not a duration: {text!r} (want e.g. 800ms, 3s)")
    return round(float(match["number"]) * _UNIT_MS[match["unit"]])


@dataclass(frozen=True)
class Retries:
    attempts: int
    per_try_timeout_ms: int
    # Envoy retry conditions; like Istio, HTTP ones (connect-failure, refused-stream) and gRPC
    # ones (unavailable, cancelled) mixed in one list.
    retry_on: tuple[str, ...]

    @classmethod
    def from_values(cls, retries: Mapping[str, Any]) -> Retries:
        return cls(
            attempts=int(retries["attempts"]),
            per_try_timeout_ms=duration_ms(retries["perTryTimeout"]),
            retry_on=tuple(c.strip() for c in str(retries["retryOn"]).split(",") if c.strip()),
        )


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_gateway_errors: int
    interval_ms: int
    base_ejection_time_ms: int
    max_ejection_percent: int


@dataclass(frozen=True)
class TrafficPolicy:
    timeout_ms: int
    retries: Retries
    # the service's idempotent reads (its public methods): also retried on a reset and on a
    # per-try timeout (Envoy's `reset`), so a short stall of one instance is not a 503 on a GET
    read_retries: Retries
    http2_max_requests: int
    max_retries: int  # retries outstanding at once: retries cannot multiply an overload
    outlier_detection: OutlierDetection

    @classmethod
    def from_values(cls, traffic: Mapping[str, Any]) -> TrafficPolicy:
        retries, outlier = traffic["retries"], traffic["outlierDetection"]
        return cls(
            timeout_ms=duration_ms(traffic["timeout"]),
            retries=Retries.from_values(retries),
            read_retries=Retries.from_values(traffic.get("readRetries", retries)),
            http2_max_requests=int(traffic["connectionPool"]["http2MaxRequests"]),
            max_retries=int(traffic["connectionPool"]["maxRetries"]),
            outlier_detection=OutlierDetection(
                consecutive_gateway_errors=int(outlier["consecutiveGatewayErrors"]),
                interval_ms=duration_ms(outlier["interval"]),
                base_ejection_time_ms=duration_ms(outlier["baseEjectionTime"]),
                max_ejection_percent=int(outlier["maxEjectionPercent"]),
            ),
        )


@dataclass(frozen=True)
class MeshService:
    """One service as the mesh sees it: how it speaks, where it listens in the cluster, its policy."""

    name: str
    protocol: str  # "grpc" (HTTP/2) or "http" (HTTP/1.1)
    port: int  # in-cluster port (for gRPC services also the local one)
    grpc_service: str | None  # the full gRPC service name: route prefix and health check name
    health_path: str | None  # HTTP services: their health endpoint
    ingress: bool
    ingress_prefixes: tuple[str, ...]  # HTTP services: URL prefixes the ingress routes to them
    ingress_paths: tuple[str, ...]  # HTTP services: exact paths the ingress routes to them
    ingress_rest: bool  # the gateway: the REST paths of every exposed gRPC service go to it
    traffic: TrafficPolicy

    @property
    def is_grpc(self) -> bool:
        return self.protocol == "grpc"

    @property
    def route_prefixes(self) -> tuple[str, ...]:
        """What the ingress routes to this service."""
        if self.grpc_service is not None:
            return (f"/{self.grpc_service}/",)
        return self.ingress_prefixes


@dataclass(frozen=True)
class RateLimit:
    """A token bucket."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval_ms: int

    @classmethod
    def per_second(cls, rate: int) -> RateLimit:
        """A bucket one second's worth deep, refilled every second."""
        return cls(max_tokens=rate, tokens_per_fill=rate, fill_interval_ms=1000)

    @classmethod
    def from_values(cls, bucket: Mapping[str, Any]) -> RateLimit:
        return cls(
            max_tokens=int(bucket["maxTokens"]),
            tokens_per_fill=int(bucket["tokensPerFill"]),
            fill_interval_ms=duration_ms(bucket["fillInterval"]),
        )


@dataclass(frozen=True)
class EdgeRateLimit:
    """The ingress's limits: one bucket per client and class of request, and a ceiling over all.

    A client is the token's subject when the caller signed in, its address otherwise. Public
    reads (GET and HEAD, and the public gRPC methods, which are all reads) draw on a larger
    bucket than everything else (writes, a caller's own data, the token endpoint): a client that
    floods spends its own buckets, not its neighbours'. `total` bounds what one ingress instance
    lets through at all (it protects the services; a request refused by its client's bucket
    costs nothing there)."""

    total: RateLimit
    reads: RateLimit
    writes: RateLimit
    max_clients: int  # buckets kept per class (least recently used ones are dropped beyond it)

    @classmethod
    def uniform(cls, rate_per_s: int) -> EdgeRateLimit:
        bucket = RateLimit.per_second(rate_per_s)
        return cls(total=bucket, reads=bucket, writes=bucket, max_clients=10_000)


@dataclass(frozen=True)
class RestRoute:
    """A REST route of the gateway: method and an Istio path template (`{*}` one segment, `{**}` the rest)."""

    method: str
    path: str

    def regex(self) -> str:
        """The same route as an RE2 regex over the path without its query string (Envoy)."""
        out = []
        for part in re.split(r"(\{\*\*?\})", self.path):
            if part == "{*}":
                out.append("[^/]+")
            elif part == "{**}":
                out.append(".+")
            else:
                out.append(re.escape(part))
        return "".join(out)


@dataclass(frozen=True)
class EdgeRefusal:
    """How the edge answers one of its own refusals (an Envoy local reply) to a REST caller."""

    status: int  # HTTP
    code: int  # google.rpc.Code in the body
    reason: str  # ErrorInfo.reason (domain "cinema")
    message: str | None  # None: the filter's own words (`Jwt is missing`, `no healthy upstream`)
    retry_after_s: int | None  # RetryInfo and Retry-After

    @classmethod
    def from_values(cls, item: Mapping[str, Any]) -> EdgeRefusal:
        retry = item.get("retryAfter")
        return cls(
            status=int(item["status"]),
            code=int(item["code"]),
            reason=str(item["reason"]),
            message=str(item["message"]) if item.get("message") else None,
            retry_after_s=int(retry) if retry else None,
        )


@dataclass(frozen=True)
class MeshPolicy:
    services: dict[str, MeshService]
    issuer: str
    audience: str
    jwks_uri: str
    public_grpc_methods: tuple[str, ...]  # `/pkg.Service/Method`
    public_rest_routes: tuple[RestRoute, ...]  # as committed in the values (for Istio)
    public_edge_paths: tuple[str, ...]  # Istio path syntax: exact, or a prefix ending in `*`
    rest_paths: tuple[str, ...]  # every REST path of the exposed gRPC services (for Istio)
    errors: tuple[EdgeRefusal, ...]
    rate_limit: EdgeRateLimit

    def public_methods_of(self, service: MeshService) -> tuple[str, ...]:
        """The public gRPC methods of one service: its idempotent reads."""
        if service.grpc_service is None:
            return ()
        return tuple(m for m in self.public_grpc_methods if m.startswith(f"/{service.grpc_service}/"))

    def exposed_grpc_services(self) -> tuple[str, ...]:
        return tuple(s.grpc_service for s in self.services.values() if s.ingress and s.grpc_service is not None)


def _service(name: str, svc: Mapping[str, Any]) -> MeshService:
    protocol = str(svc.get("protocol", "grpc"))
    if protocol not in ("grpc", "http"):
        raise PolicyError(f"services.{name}.protocol: {protocol!r} is neither grpc nor http")
    grpc = protocol == "grpc"
    return MeshService(
        name=name,
        protocol=protocol,
        port=int(svc["grpcPort"] if grpc else svc["httpPort"]),
        grpc_service=str(svc["grpcService"]) if grpc else None,
        health_path=None if grpc else str(svc.get("healthPath", "/healthz")),
        ingress=bool(svc.get("ingress", False)),
        ingress_prefixes=tuple(svc.get("ingressPrefixes", ())),
        ingress_paths=tuple(svc.get("ingressPaths", ())),
        ingress_rest=bool(svc.get("ingressRest", False)),
        traffic=TrafficPolicy.from_values(svc["traffic"]),
    )


def from_values(values: Mapping[str, Any]) -> MeshPolicy:
    ingress = values["mesh"]["ingress"]
    rate = ingress["rateLimit"]
    return MeshPolicy(
        services={name: _service(name, svc) for name, svc in values["services"].items()},
        issuer=str(values["auth"]["issuer"]),
        audience=str(values["auth"]["audience"]),
        jwks_uri=str(values["auth"]["jwksUri"]),
        public_grpc_methods=tuple(ingress.get("publicPaths", ())),
        public_rest_routes=tuple(RestRoute(r["method"], r["path"]) for r in ingress.get("publicRestPaths", ())),
        public_edge_paths=tuple(ingress.get("publicEdgePaths", ())),
        rest_paths=tuple(ingress.get("restPaths", ())),
        errors=tuple(EdgeRefusal.from_values(item) for item in ingress.get("errors", ())),
        rate_limit=EdgeRateLimit(
            total=RateLimit.from_values(rate["total"]),
            reads=RateLimit.from_values(rate["perClient"]["reads"]),
            writes=RateLimit.from_values(rate["perClient"]["writes"]),
            max_clients=int(rate["perClient"]["maxClients"]),
        ),
    )


def load_values(path: Path = DEFAULT_VALUES) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise PolicyError(f"{path}: not a mapping of values")
    return values


def load(path: Path = DEFAULT_VALUES) -> MeshPolicy:
    return from_values(load_values(path))


# --- REST twins of the public gRPC methods ---------------------------------------------------


def _import_generated() -> None:
    """Import every generated `cinema.*` module so their files are in the default descriptor pool."""
    package = importlib.import_module("cinema")
    for module in pkgutil.walk_packages(package.__path__, "cinema."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)


def _template(path: str, *, custom_verb: bool = False) -> str:
    """A google.api.http path (`/v1/movies/{movie_id}`, `{name=shelves/*}`) as an Istio template
    (with `custom_verb`, `/v1/screenings/{*}:cancel` too: a routing pattern, not an Istio path)."""

    def variable(match: re.Match[str]) -> str:
        _, _, pattern = match[1].partition("=")
        segments = (pattern or "*").split("/")
        return "/".join("{**}" if s == "**" else "{*}" if s == "*" else s for s in segments)

    if not custom_verb and ":" in path.rsplit("/", 1)[-1].split("}")[-1]:
        raise PolicyError(f"{path}: a custom verb cannot be expressed as a public path template")
    return re.sub(r"\{([^}]*)\}", variable, path)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[RestRoute]:
    for method in ("get", "put", "post", "delete", "patch"):
        if rule.HasField(method):
            yield RestRoute(method.upper(), _template(getattr(rule, method)))
    if rule.HasField("custom"):
        yield RestRoute(rule.custom.kind.upper(), _template(rule.custom.path))
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


def public_rest_routes(public_grpc_methods: Iterable[str]) -> tuple[RestRoute, ...]:
    """The REST routes (grpc-gateway) of the given gRPC methods, from their google.api.http rules.

    A method without an http rule has no REST twin; an unknown method is an error (a typo in
    the values must not silently make nothing public)."""
    _import_generated()
    pool = descriptor_pool.Default()
    routes: list[RestRoute] = []
    for full in public_grpc_methods:
        service_name, _, method_name = full.strip("/").partition("/")
        try:
            method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        except KeyError as exc:
            raise PolicyError(f"public method {full}: no such gRPC method in gen/python") from exc
        options = method.GetOptions()
        if options.HasExtension(annotations_pb2.http):
            routes.extend(_bindings(options.Extensions[annotations_pb2.http]))
    return tuple(routes)


def _every_path(rule: http_pb2.HttpRule) -> Iterable[str]:
    for method in ("get", "put", "post", "delete", "patch"):
        if rule.HasField(method):
            yield _template(getattr(rule, method), custom_verb=True)
    if rule.HasField("custom"):
        yield _template(rule.custom.path, custom_verb=True)
    for extra in rule.additional_bindings:
        yield from _every_path(extra)


def rest_paths(grpc_services: Iterable[str]) -> tuple[str, ...]:
    """Every REST path (any method) of the given gRPC services, in the order of their methods:
    what the ingress routes to the gateway (anything else under /v1/ is 404 at the edge)."""
    _import_generated()
    pool = descriptor_pool.Default()
    paths: list[str] = []
    for name in grpc_services:
        for method in pool.FindServiceByName(name).methods:
            options = method.GetOptions()
            if options.HasExtension(annotations_pb2.http):
                paths += [p for p in _every_path(options.Extensions[annotations_pb2.http]) if p not in paths]
    return tuple(paths)


def path_regex(template: str) -> str:
    """An Istio-style template (`{*}`, `{**}`) as an RE2 regex over the path."""
    return RestRoute("GET", template).regex()
