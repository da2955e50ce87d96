"""The gateway's sources: generated code fresh against protos/, Go code vetted, formatted and
unit-tested, the codegen plugins pinned where scripts/bootstrap builds them from."""

from __future__ import annotations

import re
import subprocess

from scripts.stack.paths import REPO

GATEWAY = REPO / "services" / "gateway"
PLUGINS = REPO / "scripts" / "tools" / "gateway"


def run(*argv: str, cwd: str = str(GATEWAY), timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def test_generated_code_is_fresh() -> None:
    result = run(str(GATEWAY / "generate"), "--check", cwd=str(REPO))
    assert result.returncode == 0, result.stdout + result.stderr


def test_go_vet_and_gofmt_are_clean() -> None:
    vet = run("go", "vet", "./...")
    assert vet.returncode == 0, vet.stderr
    fmt = run("gofmt", "-l", ".")
    assert fmt.returncode == 0 and fmt.stdout.strip() == "", fmt.stdout + fmt.stderr


def test_go_unit_tests_pass() -> None:
    result = run("go", "test", "-count=1", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_plugins_and_runtime_are_pinned_to_the_same_releases() -> None:
    """Generated code and the runtime it links must agree: the same grpc-gateway and protobuf
    versions in the plugin module and the gateway module, and the Go release unchanged."""

    def requirement(go_mod: str, module: str) -> str:
        found = re.search(rf"^\s*{re.escape(module)} (v\S+)", go_mod, re.MULTILINE)
        assert found, f"{module} not in go.mod"
        return found.group(1)

    plugins = (PLUGINS / "go.mod").read_text()
    gateway = (GATEWAY / "go.mod").read_text()
    for module in ("github.com/grpc-ecosystem/grpc-gateway/v2", "google.golang.org/protobuf"):
        assert requirement(plugins, module) == requirement(gateway, module), module
    assert requirement(plugins, "github.com/grpc-ecosystem/grpc-gateway/v2") == "v2.33.0"
    for go_mod in (plugins, gateway):
        assert re.search(r"^go 1\.26\.8$", go_mod, re.MULTILINE)
        assert "toolchain" not in go_mod
