"""The rendered configuration is one the real Envoy accepts, in both JWKS modes, from the CLI too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mesh import envoy, policy
from services.kit.testing_tokens import LocalTokenIssuer
from tests.integration.envoy.proxy import EnvoyProxy

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def jwks(tmp_path: Path) -> Path:
    return LocalTokenIssuer().write_jwks(tmp_path / "jwks.json")


@pytest.mark.parametrize("mode", ["local file", "identity URL", "https URL", "with tracing"])
def test_rendered_configuration_validates(tmp_path: Path, jwks: Path, mode: str) -> None:
    options = envoy.LocalOptions()
    if mode == "local file":
        options.jwks = envoy.JwksFile(jwks)
    elif mode == "https URL":
        options.jwks = envoy.JwksUrl("https://login.example.com/.well-known/jwks.json")
    elif mode == "with tracing":
        options.otlp_endpoint = "http://127.0.0.1:4318"
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy.dump(envoy.render(policy.load(), options)))
    result = envoy.validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_a_broken_configuration_is_rejected(tmp_path: Path) -> None:
    """The validation really looks: a cluster name no route knows fails it."""
    config = envoy.render(policy.load())
    config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"
    ][0]["routes"][0]["route"]["cluster"] = "no-such-cluster"
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy.dump(config))
    assert envoy.validate(path).returncode != 0


def test_cli_renders_validates_and_takes_overrides(tmp_path: Path, jwks: Path) -> None:
    out = tmp_path / "envoy.yaml"
    result = subprocess.run(
        [
            sys.executable, "-m", "mesh.envoy", "render", "--values", str(ROOT / "helm/cinema/values.yaml"),
            "--out", str(out), "--check", "--jwks-file", str(jwks), "--ingress-port", "28080",
            "--admin-port", "29901", "--egress-port", "payment=26052",
            "--upstream", "payment=127.0.0.1:25052,127.0.0.1:35052", "--issuer", "cinema-dev",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(out.read_text())
    listeners = {item["name"]: item["address"]["socket_address"] for item in config["static_resources"]["listeners"]}
    assert listeners["ingress"] == {"address": "127.0.0.1", "port_value": 28080}
    assert listeners["egress_payment"] == {"address": "127.0.0.1", "port_value": 26052}
    assert listeners["egress_reservation"]["port_value"] == 16051
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 29901}
    (payment,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "payment"]
    endpoints = payment["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [25052, 35052]


def test_every_listener_and_the_admin_bind_loopback_only() -> None:
    config = envoy.render(policy.load())
    addresses = [item["address"]["socket_address"]["address"] for item in config["static_resources"]["listeners"]]
    assert set(addresses) == {"127.0.0.1"}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


async def test_envoy_starts_on_the_rendered_file(tmp_path: Path, jwks: Path) -> None:
    """Nothing behind it: Envoy still starts, every cluster's hosts fail their health check."""
    proxy = EnvoyProxy.on_free_ports(tmp_path, {}, jwks, "cinema-test-issuer")
    await proxy.start()
    try:
        assert await proxy.healthy("payment") == set()
    finally:
        await proxy.stop()
