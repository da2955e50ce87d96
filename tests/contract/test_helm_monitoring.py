"""The chart's monitoring (monitoring.enabled): PodMonitors, the PrometheusRule and the Grafana
dashboard, validated offline.

- The Prometheus Operator objects pass the operator's own CRD schemas (helm/schemas/prometheus-operator,
  see SOURCE.md there), closed with additionalProperties: false like the Istio ones; everything else
  the profile renders passes the Kubernetes 1.31 schemas, strict.
- Every PromQL expression of the rules and the dashboard parses (Prometheus' grammar, promql-parser).
- Every metric an expression reads is a recording rule of the chart or a name the services really
  expose: each Python service's modules are imported in a fresh interpreter and its registry is
  rendered as the `/metrics` endpoint renders it (tests/integration/observability/test_monitoring_series.py
  checks the same names against a real scrape after a full run).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from functools import cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.support.monitoring import (
    CHART,
    KUBERNETES_VERSION,
    ROOT,
    Doc,
    Query,
    dashboard_queries,
    dashboards,
    exposed_names,
    helm,
    helm_env,
    metric_names,
    recorded_names,
    render,
    rule_queries,
    template,
)

OPERATOR_CRDS = ROOT / "helm" / "schemas" / "prometheus-operator"
MONITORING_GROUP = "monitoring.coreos.com/"
FULL = "t-cinema"
PROFILE = str(CHART / "ci" / "monitoring-values.yaml")
ISTIO_PROFILE = str(CHART / "ci" / "istio-values.yaml")
DASHBOARD = CHART / "dashboards" / "cinema.json"

# Collects the exposition of every Python service: each module of the service's package is
# imported (that is where the metric objects are made), then the default registry is rendered.
EXPOSITION = """
import importlib, pkgutil, sys
from prometheus_client import REGISTRY, generate_latest
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        if not module.name.endswith(".__main__"):
            importlib.import_module(module.name)
sys.stdout.write(generate_latest(REGISTRY).decode())
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return helm_env(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def monitoring(env: dict[str, str]) -> list[Doc]:
    return render(env, "-f", PROFILE)


@pytest.fixture(scope="module")
def monitoring_istio(env: dict[str, str]) -> list[Doc]:
    return render(env, "-f", ISTIO_PROFILE, "-f", PROFILE)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def is_monitoring(doc: Doc) -> bool:
    return str(doc["apiVersion"]).startswith(MONITORING_GROUP)


@cache
def chart_values() -> Doc:
    values: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def python_services() -> list[str]:
    """Services that run `python -m services.<name>` (the gateway is Go, with its own image)."""
    return sorted(name for name, svc in chart_values()["services"].items() if "image" not in svc)


# --- the operator's CRDs as closed JSON Schemas ----------------------------------------------


def close_schema(node: Any) -> Any:
    """additionalProperties: false wherever the CRD lists properties and keeps no unknown fields."""
    if isinstance(node, list):
        return [close_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    closed = {k: close_schema(v) for k, v in node.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        closed["additionalProperties"] = False
    return closed


@cache
def operator_schemas() -> dict[tuple[str, str], Doc]:
    schemas: dict[tuple[str, str], Doc] = {}
    for path in sorted(OPERATOR_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            schema["properties"].update(
                {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
            )
            schemas[(f"{group}/{version['name']}", kind)] = close_schema(schema)
    return schemas


def operator_errors(doc: Doc) -> list[str]:
    schema = operator_schemas().get((doc["apiVersion"], doc["kind"]))
    if schema is None:
        return [f"no Prometheus Operator CRD for {doc['apiVersion']} {doc['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def kubernetes_errors(doc: Doc) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"no Kubernetes {KUBERNETES_VERSION} schema ({exc})"]
    return []


# --- lint, schemas, values -------------------------------------------------------------------


@pytest.mark.parametrize("profiles", [(PROFILE,), (ISTIO_PROFILE, PROFILE)], ids=["monitoring", "istio+monitoring"])
def test_helm_lint(env: dict[str, str], profiles: tuple[str, ...]) -> None:
    files = [arg for path in profiles for arg in ("-f", path)]
    result = helm(env, "lint", str(CHART), "--strict", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_object_passes_its_schema(monitoring: list[Doc], monitoring_istio: list[Doc]) -> None:
    errors: list[str] = []
    for doc in monitoring:
        check = operator_errors if is_monitoring(doc) else kubernetes_errors
        errors += [f"{doc['kind']}/{doc['metadata']['name']}: {e}" for e in check(doc)]
    # with the mesh: the monitoring objects (the Istio ones are test_helm.py's)
    for doc in filter(is_monitoring, monitoring_istio):
        errors += [f"istio: {doc['kind']}/{doc['metadata']['name']}: {e}" for e in operator_errors(doc)]
    assert not errors, "\n".join(errors)
    assert {d["kind"] for d in monitoring if is_monitoring(d)} == {"PodMonitor", "PrometheusRule"}


def test_closed_operator_schema_catches_a_misspelt_field(monitoring: list[Doc]) -> None:
    pod_monitor = copy.deepcopy(of_kind(monitoring, "PodMonitor")[0])
    endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    endpoint["intervall"] = endpoint.pop("interval")
    assert any("intervall" in e for e in operator_errors(pod_monitor))
    rule = copy.deepcopy(of_kind(monitoring, "PrometheusRule")[0])
    rule["spec"]["groups"][1]["rules"][0]["for"] = 10  # a duration is a string
    assert operator_errors(rule)


def test_monitoring_is_off_by_default(env: dict[str, str]) -> None:
    docs = render(env)
    assert not [d for d in docs if is_monitoring(d)]
    assert not dashboards(docs)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("monitoring.enable=true", "'/monitoring': additional properties 'enable' not allowed"),
        ("monitoring.rules.reservationAvailabilityPercent=100", "/monitoring/rules/reservationAvailabilityPercent"),
        ("monitoring.rules.reservationP99Seconds=30", "/monitoring/rules/reservationP99Seconds': maximum"),
        ("monitoring.rules.consumerLagFor=10 minutes", "/monitoring/rules/consumerLagFor"),
        ("monitoring.rules.consumerPendingMessages=lots", "/monitoring/rules/consumerPendingMessages"),
        ("monitoring.dashboard.labels.grafana_dashboard=1", "/monitoring/dashboard/labels/grafana_dashboard"),
    ],
)
def test_wrong_value_is_rejected_with_a_readable_message(env: dict[str, str], setting: str, message: str) -> None:
    result = template(env, "-f", PROFILE, "--set", setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_the_mesh_needs_the_scrape_annotations(env: dict[str, str]) -> None:
    result = template(env, "-f", ISTIO_PROFILE, "-f", PROFILE, "--set", "metrics.scrape=false")
    assert result.returncode != 0
    assert "needs metrics.scrape: true" in result.stderr


# --- what is scraped --------------------------------------------------------------------------


def pod_monitor_for(docs: list[Doc], labels: dict[str, str]) -> Doc:
    found = [
        m
        for m in of_kind(docs, "PodMonitor")
        if all(labels.get(k) == v for k, v in m["spec"]["selector"]["matchLabels"].items())
    ]
    assert len(found) == 1, f"{len(found)} PodMonitors select {labels}"
    return found[0]


def test_every_service_pod_is_scraped_on_its_metrics_port(monitoring: list[Doc]) -> None:
    services = chart_values()["services"]
    deployments = {d["metadata"]["name"].removeprefix(f"{FULL}-"): d for d in of_kind(monitoring, "Deployment")}
    assert set(services) <= set(deployments)
    for name, svc in services.items():
        pod = deployments[name]["spec"]["template"]
        monitor = pod_monitor_for(monitoring, pod["metadata"]["labels"])
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cinema"]}
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert ports.get(endpoint["port"]) == svc["metricsPort"], f"{name}: {endpoint} vs {ports}"
        assert endpoint["path"] == "/metrics"
        assert endpoint["interval"] == "30s"
    labels = of_kind(monitoring, "PrometheusRule")[0]["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"  # monitoring.labels reach the Prometheus' selectors


def test_under_the_mesh_the_sidecar_serves_the_merged_metrics(monitoring_istio: list[Doc]) -> None:
    for deployment in of_kind(monitoring_istio, "Deployment"):
        pod = deployment["spec"]["template"]
        if pod["metadata"]["labels"].get("app.kubernetes.io/component") != "server":
            continue
        [endpoint] = pod_monitor_for(monitoring_istio, pod["metadata"]["labels"])["spec"]["podMetricsEndpoints"]
        assert (endpoint.get("portNumber"), endpoint["path"]) == (15020, "/stats/prometheus")
        # Istio merges the application's metrics only from the port the annotations name
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


# --- rules and dashboard ---------------------------------------------------------------------


def alerts(docs: list[Doc]) -> list[Doc]:
    rule = of_kind(docs, "PrometheusRule")[0]
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_alerts_follow_the_values(env: dict[str, str], monitoring: list[Doc]) -> None:
    by_name: dict[str, list[Doc]] = {}
    for alert in alerts(monitoring):
        by_name.setdefault(alert["alert"], []).append(alert)
    assert set(by_name) == {
        "CinemaReservationErrorBudgetBurn",
        "CinemaReservationLatencyHigh",
        "CinemaConsumerLagging",
        "CinemaOutboxStuck",
        "CinemaEventDeadLettered",
    }
    burns = [(a["labels"]["severity"], a["labels"]["long_window"]) for a in by_name["CinemaReservationErrorBudgetBurn"]]
    assert burns == [("page", "1h"), ("page", "6h"), ("ticket", "1d"), ("ticket", "3d")]
    assert "> 14.4 * (1 - 99.5 / 100)" in by_name["CinemaReservationErrorBudgetBurn"][0]["expr"]
    [latency] = by_name["CinemaReservationLatencyHigh"]
    assert latency["expr"].endswith("> 1") and latency["for"] == "10m"
    [lag] = by_name["CinemaConsumerLagging"]
    assert lag["expr"].endswith("> 100") and lag["for"] == "10m"
    [outbox] = by_name["CinemaOutboxStuck"]
    assert outbox["expr"].endswith("> 60") and outbox["for"] == "5m"
    [dead] = by_name["CinemaEventDeadLettered"]
    assert "[15m]" in dead["expr"] and dead["expr"].endswith("> 0")

    # --set passes 99.9 as a string (helm parses only integers there): numbers go as JSON
    rules = {"reservationAvailabilityPercent": 99.9, "reservationP99Seconds": 0.75, "consumerPendingMessages": 500}
    rules_json = f"monitoring.rules={json.dumps(rules)}"
    changed = render(env, "-f", PROFILE, "--set-json", rules_json, "--set", "monitoring.rules.outboxAgeFor=2m")
    exprs = {a["alert"]: a for a in alerts(changed)}
    assert "(1 - 99.9 / 100)" in exprs["CinemaReservationErrorBudgetBurn"]["expr"]
    assert exprs["CinemaReservationLatencyHigh"]["expr"].endswith("> 0.75")
    assert exprs["CinemaConsumerLagging"]["expr"].endswith("> 500")
    assert exprs["CinemaOutboxStuck"]["for"] == "2m"


def test_client_errors_spend_no_error_budget(monitoring: list[Doc]) -> None:
    rule = of_kind(monitoring, "PrometheusRule")[0]
    [sli] = [r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("record", "").endswith("ratio_rate5m")]
    errors = set(sli["expr"].split('grpc_code=~"')[1].split('"')[0].split("|"))
    assert errors == {
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    }
    assert 'grpc_method="CreateReservation"' in sli["expr"]


def test_the_dashboard_ships_as_a_sidecar_config_map(monitoring: list[Doc]) -> None:
    [config_map] = [d for d in of_kind(monitoring, "ConfigMap") if d["metadata"]["name"] == f"{FULL}-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Cinema"}
    assert json.loads(config_map["data"]["cinema.json"]) == json.loads(DASHBOARD.read_text())


def test_the_dashboard_shows_what_the_issue_asks(monitoring: list[Doc]) -> None:
    dashboard = dashboards(monitoring)["cinema.json"]
    read = set().union(*(metric_names(q.expr) for q in dashboard_queries(dashboard)))
    assert {
        "grpc_server_handled_total",  # rate and errors per service
        "grpc_server_handling_seconds_bucket",  # p50 and p99 per service
        "cinema_seats_sold_total",
        "cinema_payments_total",
        "cinema_outbox_backlog",
        "cinema_outbox_oldest_age_seconds",
        "cinema_consumer_pending_messages",
        "cinema_events_dead_lettered_total",
    } <= read
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def chart_queries(docs: list[Doc]) -> list[Query]:
    queries = list(rule_queries(docs))
    for dashboard in dashboards(docs).values():
        queries += dashboard_queries(dashboard)
    return queries


def test_every_expression_is_valid_promql(monitoring: list[Doc]) -> None:
    queries = chart_queries(monitoring)
    assert len(queries) > 30
    errors = []
    for query in queries:
        try:
            metric_names(query.expr)
        except ValueError as exc:
            errors.append(f"{query.where}: {exc}: {query.expr}")
    assert not errors, "\n".join(errors)
    for broken in ("sum(rate(cinema_payments_total[5m])", "rte(cinema_payments_total[5m])", "cinema_payments_total >"):
        with pytest.raises(ValueError):
            metric_names(broken)


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """Every series name the Python services register, as their /metrics renders it."""
    result = subprocess.run(
        [sys.executable, "-c", EXPOSITION, *(f"services.{name}" for name in python_services())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return exposed_names(result.stdout)


def unknown_metrics(queries: list[Query], known: set[str]) -> list[str]:
    return [f"{q.where}: {name}" for q in queries for name in sorted(metric_names(q.expr) - known)]


def test_every_metric_read_is_exposed_by_a_service(monitoring: list[Doc], exposed: set[str]) -> None:
    assert {"grpc_server_handled_total", "cinema_seats_sold_total", "cinema_outbox_backlog"} <= exposed
    known = exposed | recorded_names(monitoring)
    unknown = unknown_metrics(chart_queries(monitoring), known)
    assert not unknown, "metrics no service exposes:\n" + "\n".join(unknown)


def test_a_misspelt_metric_is_caught(monitoring: list[Doc], exposed: set[str]) -> None:
    known = exposed | recorded_names(monitoring)
    misspelt = [Query("dashboard", "max by (service) (cinema_outbox_backlogg)")]
    assert unknown_metrics(misspelt, known) == ["dashboard: cinema_outbox_backlogg"]
    rule = copy.deepcopy(of_kind(monitoring, "PrometheusRule")[0])
    lag = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == "CinemaConsumerLagging")
    lag["expr"] = lag["expr"].replace("cinema_consumer_pending_messages", "cinema_consumer_pending_message")
    assert unknown_metrics(list(rule_queries([rule])), known) == [
        "PrometheusRule cinema.alerts CinemaConsumerLagging: cinema_consumer_pending_message"
    ]
    # a recording rule the dashboard reads must exist too
    recorded = [Query("dashboard", "cinema:create_reservation_errors:ratio_rate7m")]
    assert unknown_metrics(recorded, known)
