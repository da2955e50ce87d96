"""The chart's monitoring objects as the tests see them: rendered PrometheusRule and dashboard,
every PromQL expression in them, the metric names those expressions read, and the names a
Prometheus endpoint exposes.

PromQL is parsed by `promql-parser` (the Prometheus grammar, ported to Rust, with Python bindings),
so an expression that Prometheus would reject fails here too, and metric names come from the
parsed vector selectors, not from a regular expression.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "helm" / "cinema"
KUBERNETES_VERSION = "1.31.0"
RELEASE = "t"
NAMESPACE = "cinema"

Doc = dict[str, Any]

# Grafana's own variables, given a value so that the expression is plain PromQL.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")

# The sample names each metric type adds to its family name in the text format.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def helm_env(home: Path) -> dict[str, str]:
    """helm's cache and config in a throwaway place (no $HOME writes, no repositories)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), f"{HELM} is missing: run `make bootstrap`"
    return subprocess.run(
        [str(HELM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def template(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return helm(
        env, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION, *extra
    )


def render(env: dict[str, str], *extra: str) -> list[Doc]:
    result = template(env, *extra)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@dataclass(frozen=True)
class Query:
    where: str  # e.g. "PrometheusRule alert CinemaOutboxStuck" or "dashboard panel 'Outbox backlog' A"
    expr: str


def rule_queries(docs: list[Doc]) -> Iterator[Query]:
    for doc in docs:
        if doc["kind"] != "PrometheusRule":
            continue
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                yield Query(f"PrometheusRule {group['name']} {name}", str(rule["expr"]))


def recorded_names(docs: list[Doc]) -> set[str]:
    return {
        rule["record"]
        for doc in docs
        if doc["kind"] == "PrometheusRule"
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def dashboard_queries(dashboard: Doc) -> Iterator[Query]:
    """Every panel target, and the metric of each `label_values(metric, label)` variable."""

    def panels(items: list[Doc]) -> Iterator[Doc]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            yield Query(f"dashboard panel {panel.get('title')!r} {target.get('refId')}", str(target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = str(query["query"] if isinstance(query, dict) else query)
        assert text.startswith("label_values(") and text.endswith(")"), f"variable {variable['name']}: {text}"
        selector, _, _label = text.removeprefix("label_values(").removesuffix(")").rpartition(",")
        yield Query(f"dashboard variable {variable['name']}", selector.strip())


def dashboards(docs: list[Doc]) -> dict[str, Doc]:
    """The dashboards of the rendered ConfigMaps, by ConfigMap key."""
    out: dict[str, Doc] = {}
    for doc in docs:
        if doc["kind"] == "ConfigMap" and "grafana_dashboard" in doc["metadata"].get("labels", {}):
            for key, text in doc["data"].items():
                out[key] = json.loads(text)
    return out


def as_promql(expr: str) -> str:
    """A Grafana expression as plain PromQL: its interval variables become 5m (a `$var` inside a
    label matcher's string stays: it is a string to the parser)."""
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace(variable, "5m")
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names the expression reads. Raises ValueError when it is not valid PromQL."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(str(node.name))
            for matcher in node.matchers.matchers if node.matchers else []:
                if matcher.name == "__name__":
                    names.add(str(matcher.value))

    promql_parser.walk(promql_parser.parse(as_promql(expr)), visit)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition offers, including those of labelled metrics
    that have no child yet (they show as `# HELP`/`# TYPE` only)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names
