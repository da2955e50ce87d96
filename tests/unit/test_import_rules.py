"""The architecture's import rules ([tool.importlinter] in pyproject.toml, checked by `make lint`)
hold for the code as it is, and each one fails on a violation: a copy of the source trees gets
one forbidden import per rule, and lint-imports must report every rule broken and exit non-zero.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.stack.paths import REPO

ROOTS = ("services", "cinema_cli", "mesh", "scripts", "tests", "gen/python/cinema")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# rule name (as pyproject.toml words it) -> (module of the copy, an import that breaks the rule)
VIOLATIONS = {
    "a service's layers": (
        "services/reservation/domain/reservation.py",
        "import services.reservation.adapters.postgres",
    ),
    "the domain is pure": ("services/movie/domain/movie.py", "import asyncpg"),
    "the service layer talks to ports": ("services/payment/service_layer/payments.py", "import grpc"),
    "no service imports another": ("services/review/adapters/grpc_api.py", "import services.movie.domain.catalog"),
    "the product (services, CLI, mesh) never imports development code": (
        "services/kit/errors.py",
        "import tests.support.servers",
    ),
}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{root / 'gen' / 'python'}{os.pathsep}{root}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_sources(to: Path) -> Path:
    for name in ROOTS:
        shutil.copytree(REPO / name, to / name, ignore=shutil.ignore_patterns("__pycache__", "static", "*.md"))
    shutil.copy(REPO / "pyproject.toml", to / "pyproject.toml")
    return to


def test_the_code_keeps_every_rule(tmp_path: Path) -> None:
    result = lint_imports(copy_of_the_sources(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("rule", sorted(VIOLATIONS))
def test_a_violation_breaks_its_rule(tmp_path: Path, rule: str) -> None:
    root = copy_of_the_sources(tmp_path)
    module, forbidden = VIOLATIONS[rule]
    path = root / module
    assert path.is_file(), f"the example module {module} moved; pick another for {rule!r}"
    path.write_text(path.read_text() + f"\n{forbidden}  # injected by the test\n")
    result = lint_imports(root)
    output = " ".join((result.stdout + result.stderr).split())  # the report wraps long names
    assert result.returncode != 0, output
    broken = output.split("Broken contracts", 1)[1]
    assert rule in broken, output
