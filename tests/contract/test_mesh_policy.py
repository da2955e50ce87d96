"""The local Envoy and Istio carry the same policy: one set of values, two renderers, no drift.

Both sides are rendered for real -- the Envoy bootstrap by `mesh.envoy`, the Istio resources by
`helm template` with mesh.enabled -- and read back into one comparable shape per service:
timeout, retries (attempts, per-try timeout, the set of retry conditions), the concurrent-request
limit, outlier detection, what the ingress routes to the service; and for the edge: the public
gRPC methods, their REST twins, the edge's public paths, the issuer/audience, the rate limit.
The last tests prove the comparison has teeth: a value changed on one side only, an edited
template and an edited renderer are each reported.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import envoy, policy
from mesh.policy import RestRoute
from services.reservation.settings import ReservationSettings

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "helm" / "cinema"
RELEASE, NAMESPACE = "t", "cinema"
FULL = f"{RELEASE}-cinema"

Doc = dict[str, Any]
Policy = dict[str, Any]  # one comparable shape; the same keys on both sides


# --- rendering both sides -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    assert HELM.exists(), f"{HELM} is missing: run `make bootstrap`"
    home = tmp_path_factory.mktemp("helm-home")
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}  # fmt: skip


def istio_docs(env: dict[str, str], *settings: str, chart: Path = CHART) -> list[Doc]:
    args = [str(HELM), "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--set", "mesh.enabled=true"]
    for setting in settings:
        args += ["--set", setting]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return [d for d in docs if str(d["apiVersion"]).startswith(("networking.istio.io/", "security.istio.io/"))]


def envoy_config(values: Doc | None = None) -> Doc:
    mesh = policy.from_values(values if values is not None else policy.load_values())
    return envoy.render(mesh, envoy.LocalOptions())


@pytest.fixture(scope="module")
def istio(helm_env: dict[str, str]) -> list[Doc]:
    return istio_docs(helm_env)


@pytest.fixture(scope="module")
def local() -> Doc:
    return envoy_config()


# --- reading each side into the comparable shape ----------------------------------------------


def envoy_ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(?:\.(\d{1,9}))?s", text)
    assert match, f"not an Envoy duration: {text}"
    return int(match[1]) * 1000 + int((match[2] or "0").ljust(3, "0")[:3])


def istio_ms(text: str) -> int:
    return policy.duration_ms(text)


def _named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)}"
    return found[0]


def istio_route_policy(route: Doc) -> Policy:
    retries = route["retries"]
    return {
        "timeout_ms": istio_ms(route["timeout"]),
        "attempts": retries["attempts"],
        "per_try_timeout_ms": istio_ms(retries["perTryTimeout"]),
        "retry_on": frozenset(retries["retryOn"].split(",")),
    }


def _istio_match(match: Doc) -> str:
    ((kind, value),) = match["uri"].items()
    return f"{kind}:{value}"


def istio_side(docs: list[Doc]) -> dict[str, Policy]:
    out: dict[str, Policy] = {}
    ingress_routes = {r["name"]: r for r in _named(docs, "VirtualService", f"{FULL}-ingress")["spec"]["http"]}
    for vs in (d for d in docs if d["kind"] == "VirtualService" and d["metadata"]["name"] != f"{FULL}-ingress"):
        name = vs["metadata"]["name"].removeprefix(f"{FULL}-")
        routes = {r["name"]: r for r in vs["spec"]["http"]}
        assert set(routes) <= {name, f"{name}-reads"}, routes
        dr = _named(docs, "DestinationRule", f"{FULL}-{name}")["spec"]["trafficPolicy"]
        od = dr["outlierDetection"]
        reads = routes.get(f"{name}-reads")
        out[name] = {
            "route": istio_route_policy(routes[name]),
            "reads": None if reads is None else istio_route_policy(reads),
            "read_paths": frozenset() if reads is None else frozenset(_istio_match(m) for m in reads["match"]),
            "max_requests": dr["connectionPool"]["http"]["http2MaxRequests"],
            "max_retries": dr["connectionPool"]["http"]["maxRetries"],
            "outlier": {
                "consecutive_gateway_errors": od["consecutiveGatewayErrors"],
                "interval_ms": istio_ms(od["interval"]),
                "base_ejection_ms": istio_ms(od["baseEjectionTime"]),
                "max_ejection_percent": od["maxEjectionPercent"],
            },
            "ingress": None,
        }
        if name in ingress_routes:
            ingress = ingress_routes[name]
            ingress_reads = ingress_routes.get(f"{name}-reads")
            out[name]["ingress"] = {
                "route": istio_route_policy(ingress),
                "reads": None if ingress_reads is None else istio_route_policy(ingress_reads),
                "matches": frozenset(_istio_match(m) for m in ingress["match"])
                | frozenset(_istio_match(m) for m in (ingress_reads or {}).get("match", [])),
            }
    return out


def _hcm(listener: Doc) -> Doc:
    typed: Doc = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def _listeners(config: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in config["static_resources"]["listeners"]}


def envoy_route_policy(action: Doc) -> Policy:
    timeouts = {envoy_ms(action["timeout"])}
    if "max_stream_duration" in action:  # gRPC: the caller's deadline, capped at the same timeout
        timeouts |= {envoy_ms(v) for v in action["max_stream_duration"].values()}
    assert len(timeouts) == 1, f"route to {action['cluster']}: timeouts disagree within Envoy: {action}"
    retry = action.get("retry_policy", {})
    return {
        "timeout_ms": timeouts.pop(),
        "attempts": retry.get("num_retries", 0),
        "per_try_timeout_ms": envoy_ms(retry["per_try_timeout"]) if retry else None,
        "retry_on": frozenset(retry["retry_on"].split(",")) if retry else frozenset(),
    }


def _envoy_match(match: Doc) -> str:
    if "safe_regex" in match:
        return f"regex:{match['safe_regex']['regex']}"
    ((kind, value),) = ((k, v) for k, v in match.items() if k in ("prefix", "path"))
    return f"{'exact' if kind == 'path' else kind}:{value}"


GRPC_METHOD = re.compile(r"/[a-z][\w.]*\.[A-Z]\w*/[A-Z]\w*")


def _split_reads(routes: list[Doc]) -> tuple[list[Doc], list[Doc]]:
    """The routes of single gRPC methods (the public reads) and the others."""
    reads = [r for r in routes if GRPC_METHOD.fullmatch(r["match"].get("path", ""))]
    return reads, [r for r in routes if r not in reads]


def _one_policy(routes: list[Doc], what: str) -> Policy | None:
    if not routes:
        return None
    shapes = {frozenset(envoy_route_policy(r["route"]).items()) for r in routes}
    assert len(shapes) == 1, f"{what}: the routes of Envoy disagree: {shapes}"
    return envoy_route_policy(routes[-1]["route"])


def envoy_side(config: Doc) -> dict[str, Policy]:
    listeners = _listeners(config)
    ingress_routes: dict[str, list[Doc]] = {}
    for route in _hcm(listeners["ingress"])["route_config"]["virtual_hosts"][0]["routes"]:
        if "route" in route:
            ingress_routes.setdefault(route["route"]["cluster"], []).append(route)
    out: dict[str, Policy] = {}
    for cluster in config["static_resources"]["clusters"]:
        name = cluster["name"]
        if name in ("jwks", "otlp"):
            continue
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        od = cluster["outlier_detection"]
        assert od["enforcing_consecutive_gateway_failure"] == 100, name  # Istio enforces it always
        in_reads, in_rest = _split_reads(ingress_routes.get(name, []))
        egress = listeners.get(f"egress_{name}")
        e_reads, e_rest = _split_reads(
            _hcm(egress)["route_config"]["virtual_hosts"][0]["routes"] if egress is not None else []
        )
        route = _one_policy(in_rest + e_rest, name)
        reads = _one_policy(in_reads + e_reads, f"{name} reads")
        assert route is not None, name
        out[name] = {
            "route": route,
            "reads": reads,
            "read_paths": frozenset(_envoy_match(r["match"]) for r in e_reads),
            "max_requests": threshold["max_requests"],
            "max_retries": threshold["max_retries"],
            "outlier": {
                "consecutive_gateway_errors": od["consecutive_gateway_failure"],
                "interval_ms": envoy_ms(od["interval"]),
                "base_ejection_ms": envoy_ms(od["base_ejection_time"]),
                "max_ejection_percent": od["max_ejection_percent"],
            },
            "ingress": None,
        }
        if name in ingress_routes:
            out[name]["ingress"] = {
                "route": _one_policy(in_rest, f"{name} ingress"),
                "reads": _one_policy(in_reads, f"{name} ingress reads"),
                "matches": frozenset(_envoy_match(r["match"]) for r in ingress_routes[name]),
            }
    return out


@dataclass(frozen=True)
class Edge:
    public_grpc: frozenset[str]
    public_rest: frozenset[tuple[str, str]]  # (method, regex)
    public_edge: frozenset[tuple[str, str]]  # ("path"|"prefix", value)
    issuer: str
    audiences: frozenset[str]
    rate_limit: str  # the local_ratelimit filter's buckets, descriptors and actions (canonical JSON)
    errors: str  # the local reply mappers (canonical JSON)
    not_found: tuple[int, str]  # the last route: what nobody serves


def _canonical(value: Any) -> Any:
    """Durations in milliseconds (`1.000s` and `1s` alike), mappings sorted: one spelling for both sides."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?s", value):
        return envoy_ms(value)
    return value


def _rate_limit_shape(typed: Doc) -> str:
    keys = (
        "token_bucket",
        "descriptors",
        "rate_limits",
        "max_dynamic_descriptors",
        "rate_limited_as_resource_exhausted",
    )
    return json.dumps(_canonical({k: typed.get(k) for k in keys}), sort_keys=True)


def _errors_shape(local_reply: Doc) -> str:
    return json.dumps(_canonical(local_reply), sort_keys=True)


def istio_edge(docs: list[Doc]) -> Edge:
    rules = _named(docs, "AuthorizationPolicy", f"{FULL}-ingress-jwt")["spec"]["rules"]
    grpc: set[str] = set()
    rest: set[tuple[str, str]] = set()
    edge: set[tuple[str, str]] = set()
    for rule in rules:
        if "from" in rule:
            assert rule["from"] == [{"source": {"requestPrincipals": ["*"]}}]
            continue
        for to in rule["to"]:
            operation = to["operation"]
            for path in operation["paths"]:
                if "methods" in operation:
                    rest |= {(m, RestRoute(m, path).regex()) for m in operation["methods"]}
                elif re.fullmatch(r"/[a-z][\w.]*\.[A-Z]\w*/[A-Z]\w*", path):
                    grpc.add(path)
                else:
                    edge.add(("prefix", path[:-1]) if path.endswith("*") else ("path", path))
    ra = _named(docs, "RequestAuthentication", f"{FULL}-jwt-ingress")["spec"]["jwtRules"][0]
    bucket = _named(docs, "EnvoyFilter", f"{FULL}-ingress-rate-limit")["spec"]["configPatches"][0]["patch"]["value"]
    errors = _named(docs, "EnvoyFilter", f"{FULL}-ingress-errors")["spec"]["configPatches"][0]["patch"]["value"]
    last = _named(docs, "VirtualService", f"{FULL}-ingress")["spec"]["http"][-1]
    assert "match" not in last, "the not-found route must take whatever no route before it did"
    return Edge(
        frozenset(grpc), frozenset(rest), frozenset(edge), ra["issuer"], frozenset(ra["audiences"]),
        _rate_limit_shape(bucket["typed_config"]), _errors_shape(errors["typed_config"]["local_reply_config"]),
        (last["directResponse"]["status"], last["directResponse"]["body"]["string"]),
    )  # fmt: skip


def envoy_edge(config: Doc) -> Edge:
    hcm = _hcm(_listeners(config)["ingress"])
    filters = {f["name"]: f["typed_config"] for f in hcm["http_filters"]}
    jwt = filters["envoy.filters.http.jwt_authn"]
    (provider,) = jwt["providers"].values()
    grpc: set[str] = set()
    rest: set[tuple[str, str]] = set()
    edge: set[tuple[str, str]] = set()
    for rule in jwt["rules"]:
        match, requires = rule["match"], rule.get("requires")
        if match == {"prefix": "/"}:
            assert requires == {"provider_name": envoy.JWT_PROVIDER}, "the default must require a valid token"
            continue
        if requires is None:  # no JWT check at all
            ((kind, value),) = match.items()
            edge.add((kind, value))
            continue
        assert {"allow_missing": {}} in requires["requires_any"]["requirements"]
        if "safe_regex" in match:
            (method,) = [h["string_match"]["exact"] for h in match["headers"] if h["name"] == ":method"]
            rest.add((method, match["safe_regex"]["regex"]))
        else:
            grpc.add(match["path"])
    last = hcm["route_config"]["virtual_hosts"][0]["routes"][-1]
    assert last["match"] == {"prefix": "/"}, "the not-found route must take whatever no route before it did"
    # the token is asked for by the routes that lead somewhere, not by the one that does not
    assert last["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]["disabled"] is True
    return Edge(
        frozenset(grpc), frozenset(rest), frozenset(edge), provider["issuer"], frozenset(provider["audiences"]),
        _rate_limit_shape(filters["envoy.filters.http.local_ratelimit"]), _errors_shape(hcm["local_reply_config"]),
        (last["direct_response"]["status"], last["direct_response"]["body"]["inline_string"]),
    )  # fmt: skip


def differences(local: Doc, istio: list[Doc]) -> list[str]:
    """Every way the two renderings disagree, in words (empty: they carry the same policy)."""
    problems: list[str] = []
    mine, theirs = envoy_side(local), istio_side(istio)
    if set(mine) != set(theirs):
        problems.append(f"services: Envoy {sorted(mine)} vs Istio {sorted(theirs)}")
    for name in sorted(set(mine) & set(theirs)):
        problems += _diff(f"{name}", mine[name], theirs[name])
    a, b = envoy_edge(local), istio_edge(istio)
    for field in Edge.__dataclass_fields__:
        if getattr(a, field) != getattr(b, field):
            problems.append(f"edge {field}: Envoy {getattr(a, field)} vs Istio {getattr(b, field)}")
    return problems


def _diff(where: str, a: Any, b: Any) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff(f"{where}.{key}", a.get(key), b.get(key))
    elif a != b:
        yield f"{where}: Envoy {a} vs Istio {b}"


# --- the two sides agree ---------------------------------------------------------------------------


def test_every_service_route_carries_the_same_policy_in_envoy_and_istio(local: Doc, istio: list[Doc]) -> None:
    assert not differences(local, istio), "\n".join(differences(local, istio))
    # and the shape is not empty: every service of the values is compared, with real numbers
    compared = envoy_side(local)
    assert set(compared) == set(policy.load().services)
    assert compared["payment"]["route"] == {
        "timeout_ms": 800, "attempts": 1, "per_try_timeout_ms": 400,
        "retry_on": frozenset({"connect-failure", "refused-stream", "reset"}),
    }  # fmt: skip
    # payment's retries (a reset or a per-try timeout: another instance) fit in reservation's deadline
    payment_route = compared["payment"]["route"]
    tries_ms = (payment_route["attempts"] + 1) * payment_route["per_try_timeout_ms"]
    assert tries_ms <= payment_route["timeout_ms"] <= ReservationSettings().payment_deadline_ms
    assert compared["payment"]["ingress"] is None  # payment is not exposed
    gateway = compared["gateway"]["ingress"]["matches"]
    assert {"prefix:/openapi.json", "prefix:/docs", "regex:/v1/board", "regex:/v1/screenings/[^/]+:cancel"} <= gateway
    assert not [m for m in gateway if m.startswith("prefix:/v1")]  # exactly the REST paths: others are 404
    web = compared["web"]["ingress"]["matches"]
    assert "exact:/" in web and "prefix:/" not in web  # its own pages only: the rest is 404
    # public reads are retried on a reset and a per-try timeout too; writes are not
    assert "reset" in compared["viewpage"]["reads"]["retry_on"] and "reset" in compared["movie"]["reads"]["retry_on"]
    assert "reset" not in compared["movie"]["route"]["retry_on"]
    assert "reset" not in compared["reservation"]["route"]["retry_on"]
    assert compared["movie"]["read_paths"] == frozenset(
        f"exact:{m}" for m in policy.load().public_grpc_methods if m.startswith("/cinema.movie.v1.")
    )


def test_the_edge_agrees(local: Doc, istio: list[Doc]) -> None:
    a, b = envoy_edge(local), istio_edge(istio)
    assert a == b
    assert len(a.public_grpc) == 9 and len(a.public_rest) == 9 and a.public_edge
    assert a.audiences == frozenset({"cinema"})


def test_the_committed_rest_paths_are_the_ones_the_protos_derive() -> None:
    """Istio reads publicRestPaths from the values (Helm cannot read protos): they must be current."""
    mesh = policy.load()
    derived = policy.public_rest_routes(mesh.public_grpc_methods)
    assert mesh.public_rest_routes == derived, "stale: run `python -m mesh.envoy public-rest` and update values"
    every = policy.rest_paths(mesh.exposed_grpc_services())
    assert mesh.rest_paths == every, "stale: run `python -m mesh.envoy rest-paths` and update mesh.ingress.restPaths"


def _http_rules() -> Iterator[tuple[str, RestRoute]]:
    """(gRPC method, REST route) of every google.api.http rule of the contracts."""
    from google.protobuf import descriptor_pool

    policy.public_rest_routes(())  # imports every generated module into the pool
    pool = descriptor_pool.Default()
    for module in ("movie", "review", "reservation", "payment", "notification"):
        file = pool.FindFileByName(f"cinema/{module}/v1/{module}.proto")
        for service in file.services_by_name.values():
            for method in service.methods:
                full = f"/{service.full_name}/{method.name}"
                try:
                    yield from ((full, r) for r in policy.public_rest_routes([full]))
                except policy.PolicyError:  # custom verbs: never public, fine
                    continue
    board = pool.FindFileByName("cinema/viewpage/v1/board.proto").services_by_name["BoardService"]
    for method in board.methods:
        full = f"/{board.full_name}/{method.name}"
        yield from ((full, r) for r in policy.public_rest_routes([full]))


def test_no_protected_rest_route_hides_behind_a_public_template() -> None:
    """A public template ({*}) must not also match a protected method's REST path."""
    mesh = policy.load()
    public = policy.public_rest_routes(mesh.public_grpc_methods)
    for method, route in _http_rules():
        if method in mesh.public_grpc_methods:
            continue
        sample = re.sub(r"\{\*\*?\}", "x", route.path)
        for open_route in public:
            assert not (open_route.method == route.method and re.fullmatch(open_route.regex(), sample)), (
                f"{method} ({route.method} {route.path}) would be public through {open_route}"
            )


def test_the_mesh_makes_public_exactly_what_the_services_serve_anonymously() -> None:
    """The services' own PUBLIC_METHODS and the edge's publicPaths name the same methods."""
    served: set[str] = set()
    for name in ("movie", "review", "reservation", "viewpage"):
        module = importlib.import_module(f"services.{name}.adapters.grpc_api")
        served |= set(module.PUBLIC_METHODS)
    assert set(policy.load().public_grpc_methods) == served


# --- the comparison has teeth ------------------------------------------------------------------------


CHANGES = [
    ("services.payment.traffic.timeout=900ms", "payment.route.timeout_ms"),
    ("services.movie.traffic.retries.attempts=3", "movie.route.attempts"),
    ("services.review.traffic.retries.perTryTimeout=2s", "review.route.per_try_timeout_ms"),
    ("services.viewpage.traffic.retries.retryOn=connect-failure", "viewpage.route.retry_on"),
    ("services.reservation.traffic.connectionPool.http2MaxRequests=7", "reservation.max_requests"),
    ("services.movie.traffic.connectionPool.maxRetries=1", "movie.max_retries"),
    ("services.payment.traffic.outlierDetection.consecutiveGatewayErrors=9", "payment.outlier.consecutive_gateway"),
    ("services.notification.traffic.outlierDetection.interval=1m", "notification.outlier.interval_ms"),
    ("services.identity.traffic.outlierDetection.baseEjectionTime=5s", "identity.outlier.base_ejection_ms"),
    ("services.gateway.traffic.outlierDetection.maxEjectionPercent=10", "gateway.outlier.max_ejection_percent"),
    ("services.reservation.traffic.timeout=1s", "reservation.ingress.route.timeout_ms"),
    ("mesh.ingress.rateLimit.total.maxTokens=1", "edge rate_limit"),
    ("mesh.ingress.rateLimit.perClient.reads.tokensPerFill=1", "edge rate_limit"),
    ("mesh.ingress.rateLimit.perClient.maxClients=5", "edge rate_limit"),
    ("services.viewpage.traffic.readRetries.retryOn=connect-failure", "viewpage.reads.retry_on"),
    ("services.movie.traffic.readRetries.perTryTimeout=3s", "movie.ingress.reads.per_try_timeout_ms"),
    ("mesh.ingress.publicEdgePaths={/openapi.json}", "edge public_edge"),
    ("auth.audience=other", "edge audiences"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "reported"), CHANGES, ids=[c[0].split("=")[0] for c in CHANGES])
def test_a_value_changed_on_one_side_only_is_reported(
    helm_env: dict[str, str], local: Doc, setting: str, reported: str
) -> None:
    problems = differences(local, istio_docs(helm_env, setting))
    assert any(p.startswith(reported) for p in problems), problems


def test_a_public_method_added_on_one_side_only_is_reported(helm_env: dict[str, str], istio: list[Doc]) -> None:
    values = policy.load_values()
    values["mesh"]["ingress"]["publicPaths"] = [
        *values["mesh"]["ingress"]["publicPaths"],
        "/cinema.viewpage.v1.BoardService/ListCustomerReservations",
    ]
    problems = differences(envoy_config(values), istio)
    assert any(p.startswith("edge public_grpc") for p in problems), problems
    assert any(p.startswith("edge public_rest") for p in problems), problems


def test_an_edge_refusal_changed_on_one_side_only_is_reported(istio: list[Doc]) -> None:
    values = policy.load_values()
    (rate_limited,) = [e for e in values["mesh"]["ingress"]["errors"] if e["status"] == 429]
    rate_limited["retryAfter"] = 5
    problems = differences(envoy_config(values), istio)
    assert [p for p in problems if p.startswith("edge errors")], problems


def test_an_edited_template_is_reported(helm_env: dict[str, str], local: Doc, tmp_path: Path) -> None:
    chart = tmp_path / "cinema"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "mesh.yaml"
    text = template.read_text()
    assert "perTryTimeout: {{ $t.retries.perTryTimeout }}" in text
    template.write_text(text.replace("perTryTimeout: {{ $t.retries.perTryTimeout }}", "perTryTimeout: 10s"))
    problems = differences(local, istio_docs(helm_env, chart=chart))
    assert {p.split(":")[0] for p in problems} == {f"{n}.route.per_try_timeout_ms" for n in policy.load().services}


def test_an_edited_renderer_is_reported(istio: list[Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    original: Callable[..., Doc] = envoy.service_cluster

    def looser_breaker(service: policy.MeshService, instances: list[envoy.Address]) -> Doc:
        cluster = original(service, instances)
        cluster["circuit_breakers"]["thresholds"][0]["max_requests"] *= 2
        return cluster

    monkeypatch.setattr(envoy, "service_cluster", looser_breaker)
    problems = differences(envoy_config(), istio)
    assert {p.split(":")[0] for p in problems} == {f"{n}.max_requests" for n in policy.load().services}


# --- the Istio installation (mesh/istio) fits what the chart expects -------------------------------


def test_the_istio_install_profile_fits_the_chart(istio: list[Doc]) -> None:
    ingress = policy.load_values()["mesh"]["ingress"]
    operator = yaml.safe_load((ROOT / "mesh" / "istio" / "istio-operator.yaml").read_text())
    assert (operator["apiVersion"], operator["kind"]) == ("install.istio.io/v1alpha1", "IstioOperator")
    (gateway,) = [g for g in operator["spec"]["components"]["ingressGateways"] if g["enabled"]]
    assert gateway["name"] == "istio-ingressgateway" and gateway["namespace"] == ingress["namespace"]
    assert ingress["selector"].items() <= gateway["label"].items()
    # istioctl names the gateway's service account <name>-service-account: the principal the chart allows
    assert ingress["serviceAccount"] == f"{gateway['name']}-service-account"
    ports = {p["port"] for p in gateway["k8s"]["service"]["ports"]}
    (server,) = _named(istio, "Gateway", f"{FULL}-gateway")["spec"]["servers"]
    assert server["port"]["number"] in ports and server["port"]["protocol"] == "HTTP2"
    mesh_config = operator["spec"]["meshConfig"]
    assert (mesh_config["accessLogFile"], mesh_config["accessLogEncoding"]) == ("/dev/stdout", "JSON")
    # the Helm-chart variant of the same installation
    helm_gateway = yaml.safe_load((ROOT / "mesh" / "istio" / "helm" / "gateway-values.yaml").read_text())
    assert ingress["selector"].items() <= helm_gateway["labels"].items()
    istiod = yaml.safe_load((ROOT / "mesh" / "istio" / "helm" / "istiod-values.yaml").read_text())
    assert istiod["meshConfig"]["accessLogEncoding"] == "JSON"
    # the version the runbook installs is the version of the CRD schemas the chart is checked against
    source = (ROOT / "helm" / "schemas" / "istio" / "SOURCE.md").read_text()
    runbook = (ROOT / "mesh" / "README.md").read_text()
    assert re.search(r"the 1\.31\s+line", source) and "ISTIO_VERSION=1.31.0" in runbook


def test_the_stores_and_the_migrations_stay_outside_the_mesh(istio: list[Doc], helm_env: dict[str, str]) -> None:
    """STRICT mTLS would refuse the migration Jobs (no sidecar) at PostgreSQL if the stores had sidecars."""
    args = [str(HELM), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "mesh.enabled=true"]
    result = subprocess.run(args, cwd=ROOT, env=helm_env, capture_output=True, text=True, timeout=120, check=False)
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    outside = [d for d in docs if d["kind"] in ("StatefulSet", "Job")]
    assert len(outside) == 8
    for d in outside:
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("sidecar.istio.io/inject") == "false", d["metadata"]["name"]
    for d in (d for d in docs if d["kind"] == "Deployment"):
        assert "sidecar.istio.io/inject" not in d["spec"]["template"]["metadata"].get("annotations", {})
