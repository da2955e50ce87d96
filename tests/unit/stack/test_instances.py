"""Redundancy in the local runtime: how many instances of each service `make up` runs
(CINEMA_INSTANCES, CINEMA_<SERVICE>_INSTANCES), on which ports, and that every consumer of the
instances (Envoy's clusters, the mesh page, the benchmark) sees all of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.bench.stack import Stack
from scripts.stack import components, edge
from services.web.adapters.mesh_sources import combine_instances
from services.web.service_layer.mesh import Sample
from services.web.settings import WebSettings


@pytest.fixture(autouse=True)
def _no_instance_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CINEMA_INSTANCES",
        "MONGO_URL",
        *(f"CINEMA_{s.upper()}_INSTANCES" for s in components.INSTANCE_PORTS),
    ):
        monkeypatch.delenv(name, raising=False)


def test_two_instances_by_default_and_movie_alone_on_ferretdb() -> None:
    assert {s: components.instances(s) for s in components.SERVICE_PORTS} == {
        "reservation": 2,
        "payment": 2,
        "movie": 1,  # FerretDB does not isolate concurrent updates of one document
        "review": 2,
        "notification": 2,
        "viewpage": 2,
    }


def test_movie_runs_two_on_a_real_mongodb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URL", "mongodb://127.0.0.1:27017")
    assert components.instances("movie") == 2


def test_instances_configurable_down_to_one_and_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CINEMA_INSTANCES", "1")
    monkeypatch.setenv("CINEMA_PAYMENT_INSTANCES", "3")
    assert components.instances("reservation") == 1
    assert components.instances("payment") == 3


@pytest.mark.parametrize("value", ["0", "4", "two", "-1"])
def test_a_bad_instance_count_is_refused_with_its_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CINEMA_REVIEW_INSTANCES", value)
    with pytest.raises(ValueError, match="CINEMA_REVIEW_INSTANCES must be a whole number from 1 to 3"):
        components.instances("review")


def test_two_movie_instances_on_ferretdb_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CINEMA_MOVIE_INSTANCES", "2")
    with pytest.raises(ValueError, match="FerretDB does not isolate"):
        components.instances("movie")


def test_every_instance_has_ports_of_its_own() -> None:
    ports = [p for service in components.INSTANCE_PORTS.values() for pair in service for p in pair]
    assert len(ports) == len(set(ports)) + 2 * components.MAX_INSTANCES  # identity and web: metrics on the HTTP port
    assert components.INSTANCE_PORTS["reservation"][:2] == [(15051, 19101), (15151, 19201)]


def test_each_instance_is_a_component_of_its_own() -> None:
    stores = [
        components.Component(n, f"{n}://127.0.0.1:1", lambda: True) for n in ("postgres", "mongo", "redis", "nats")
    ]
    services = components.service_components(stores)
    names = [c.name for c in services]
    assert names.count("reservation") == names.count("reservation-2") == 1
    assert "movie-2" not in names
    by_name = {c.name: c for c in services}
    assert by_name["reservation"].ports != by_name["reservation-2"].ports
    assert by_name["reservation-2"].depends_on == by_name["reservation"].depends_on


def test_the_edge_runs_its_instances_too() -> None:
    stores = [
        components.Component(n, f"{n}://127.0.0.1:1", lambda: True) for n in ("postgres", "mongo", "redis", "nats")
    ]
    edge_ = {c.name: c for c in components.edge_components(stores)}
    assert set(edge_) == {"identity", "identity-2", "envoy", "gateway", "gateway-2", "web", "web-2"}
    # the demo accounts are seeded once, by the first identity
    assert edge_["identity"].after_ready is not None and edge_["identity-2"].after_ready is None
    assert edge_["gateway-2"].ports == components.INSTANCE_PORTS["gateway"][1]


def test_envoy_balances_over_every_instance(tmp_path: Path) -> None:
    path = edge.render_envoy(
        tmp_path / "envoy.yaml",
        edge.EnvoyPorts(18080, 19901, dict(components.EGRESS_PORTS)),
        {"payment": [15052, 15152], "identity": [18081]},
        edge.IdentityEndpoints(18081),
    )
    clusters = {c["name"]: c for c in yaml.safe_load(path.read_text())["static_resources"]["clusters"]}
    endpoints = clusters["payment"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [15052, 15152]
    assert clusters["payment"]["health_checks"] and clusters["payment"]["outlier_detection"]


def test_the_mesh_page_adds_up_the_instances_of_a_service() -> None:
    settings = WebSettings(mesh_service_metrics="a=http://h:1/metrics,a=http://h:2/metrics,b=http://h:3/metrics")
    assert settings.mesh_metrics_urls == {
        "a": ["http://h:1/metrics", "http://h:2/metrics"],
        "b": ["http://h:3/metrics"],
    }
    one = [
        Sample("grpc_server_handled_total", {"grpc_code": "OK"}, 3.0),
        Sample("process_start_time_seconds", {}, 100.0),
    ]
    two = [
        Sample("grpc_server_handled_total", {"grpc_code": "OK"}, 4.0),
        Sample("process_start_time_seconds", {}, 250.0),
    ]
    combined = {s.name: s.value for s in combine_instances([one, two])}
    assert combined == {"grpc_server_handled_total": 7.0, "process_start_time_seconds": 250.0}


def test_the_benchmark_reaches_every_instance_directly() -> None:
    stack = Stack(Path("/tmp"), {"payment": [1, 2], "movie": [3]}, {"payment": [4, 5], "movie": [6]}, "x:1", True)
    assert stack.address("payment", "direct") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert stack.address("movie", "direct") == "127.0.0.1:3"
    assert stack.address("payment", "ingress") == "x:1"
    assert stack.instance_of("payment-2") == "payment"
    assert stack.instance_of("payment") == "payment"
    assert stack.instance_of("postgres") is None
