"""Every alert of the chart's PrometheusRule, evaluated by Prometheus' own rule engine on synthetic
series: `promtool test rules` (built from the pinned module, scripts/tools/prometheus, into
.tools/bin by scripts/bootstrap) over helm/cinema/ci/rule-tests/alerts.test.yaml.

- The rule is rendered as the chart renders it (ci/monitoring-values.yaml), its groups written
  where the test file expects them; promtool must pass every case.
- Every alert has a case where it fires and one where it stays silent (read from the test file).
- The cases can fail: with one alert taken out of the rules, or its threshold raised far out of
  reach, promtool reports failures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.monitoring import CHART, ROOT, Doc, helm_env, render

PROMTOOL = ROOT / ".tools" / "bin" / "promtool"
CASES = CHART / "ci" / "rule-tests" / "alerts.test.yaml"
PROFILE = str(CHART / "ci" / "monitoring-values.yaml")


@pytest.fixture(scope="module")
def rule_groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    docs: list[Doc] = render(helm_env(tmp_path_factory.mktemp("helm-home")), "-f", PROFILE)
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    assert len(rules) == 1, [d.get("kind") for d in docs]
    groups: list[dict[str, Any]] = rules[0]["spec"]["groups"]
    return groups


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def promtool_test(folder: Path, groups: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), f"{PROMTOOL} is missing: run scripts/bootstrap (it builds promtool)"
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(CASES, folder / CASES.name)
    return subprocess.run(
        [str(PROMTOOL), "test", "rules", CASES.name], cwd=folder, capture_output=True, text=True, timeout=120
    )


def test_promtool_is_the_pinned_build() -> None:
    assert PROMTOOL.exists(), f"{PROMTOOL} is missing: run scripts/bootstrap (it builds promtool)"
    pinned = re.search(
        r"github.com/prometheus/prometheus (v\S+)", (ROOT / "scripts/tools/prometheus/go.mod").read_text()
    )
    assert pinned
    version = subprocess.run([str(PROMTOOL), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0, version.stderr
    assert pinned.group(1) in version.stdout + version.stderr


def test_every_alert_passes_its_cases(rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    result = promtool_test(tmp_path, rule_groups)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case(rule_groups: list[dict[str, Any]]) -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(CASES.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = alert_names(rule_groups)
    assert alerts, "the chart's PrometheusRule has no alert"
    assert alerts <= fires, f"alerts never seen firing: {sorted(alerts - fires)}"
    assert alerts <= silent, f"alerts never seen staying silent: {sorted(alerts - silent)}"


@pytest.mark.parametrize("how", ["removed", "unreachable"])
def test_the_cases_fail_when_an_alert_is_broken(rule_groups: list[dict[str, Any]], tmp_path: Path, how: str) -> None:
    for name in sorted(alert_names(rule_groups)):
        broken = []
        for group in rule_groups:
            rules = []
            for rule in group["rules"]:
                if rule.get("alert") != name:
                    rules.append(rule)
                elif how == "unreachable":
                    rules.append({**rule, "expr": f"({rule['expr']}) > 1e12"})
            broken.append({**group, "rules": rules})
        folder = tmp_path / f"{how}-{name}"
        folder.mkdir()
        result = promtool_test(folder, broken)
        assert result.returncode != 0, f"{name} {how}: promtool still passed\n{result.stdout}"
        assert name in result.stdout + result.stderr
