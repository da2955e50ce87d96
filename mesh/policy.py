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
    http2_max_requests: int
    max_retries: int  # retries outstanding at once: retries cannot multiply an overload
    outlier_detection: OutlierDetection

    @classmethod
    def from_values(cls, traffic: Mapping[str, Any]) -> TrafficPolicy:
        retries, outlier = traffic["retries"], traffic["outlierDetection"]
        return cls(
            timeout_ms=duration_ms(traffic["timeout"]),
            retries=Retries(
                attempts=int(retries["attempts"]),
                per_try_timeout_ms=duration_ms(retries["perTryTimeout"]),
                retry_on=tuple(c.strip() for c in str(retries["retryOn"]).split(",") if c.strip()),
            ),
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
    """A token bucket over every request through the ingress."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval_ms: int


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
class MeshPolicy:
    services: dict[str, MeshService]
    issuer: str
    audience: str
    jwks_uri: str
    public_grpc_methods: tuple[str, ...]  # `/pkg.Service/Method`
    public_rest_routes: tuple[RestRoute, ...]  # as committed in the values (for Istio)
    public_edge_paths: tuple[str, ...]  # Istio path syntax: exact, or a prefix ending in `*`
    rate_limit: RateLimit


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
        rate_limit=RateLimit(
            max_tokens=int(rate["maxTokens"]),
            tokens_per_fill=int(rate["tokensPerFill"]),
            fill_interval_ms=duration_ms(rate["fillInterval"]),
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


def _template(path: str) -> str:
    """A google.api.http path (`/v1/movies/{movie_id}`, `{name=shelves/*}`) as an Istio template."""

    def variable(match: re.Match[str]) -> str:
        _, _, pattern = match[1].partition("=")
        segments = (pattern or "*").split("/")
        return "/".join("{**}" if s == "**" else "{*}" if s == "*" else s for s in segments)

    if ":" in path.rsplit("/", 1)[-1].split("}")[-1]:
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
