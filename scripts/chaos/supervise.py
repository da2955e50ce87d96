"""The supervisor of a chaos stack: `make up`'s own supervisor and components, with two additions
that live here so the runtime stays as it is.

- Spare instance slots in Envoy: every service's cluster gets a second endpoint on a port named
  in `CHAOS_SPARE_PORTS` (`reservation=23001,...`), appended to the configuration the runtime
  renders. Nothing listens there until a rolling restart starts a second instance; until then
  Envoy's active health check keeps the slot out of the rotation.
- The services' launch specs (argv, environment, log) in `<data>/run/chaos-services.json`, so the
  chaos process can start a second instance exactly as this supervisor would (it must not
  compute them itself: the runtime fixes its ports and data folder when it is first imported).
- Holds: while the file `<data>/run/hold/<component>` exists, a component that exited is not
  restarted (the "stop the movie service" scenario, and the hand-over of a rolling restart).

Run as `python -m scripts.chaos.supervise` with the scratch stack's environment.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import yaml

from scripts.stack.components import Component, local_components
from scripts.stack.paths import DATA
from scripts.stack.process import ManagedProcess
from scripts.stack.supervisor import RUN, Supervisor

SPARE_PORTS_ENV = "CHAOS_SPARE_PORTS"
HOLD_DIR = RUN / "hold"

log = logging.getLogger("cinema.chaos.supervisor")


def spare_ports() -> dict[str, int]:
    spec = os.environ.get(SPARE_PORTS_ENV, "")
    pairs = (item.split("=", 1) for item in spec.split(",") if "=" in item)
    return {name.strip(): int(port) for name, port in pairs}


def add_spare_endpoints(config_path: Path, spares: dict[str, int]) -> None:
    """Append one endpoint per service to its cluster in the rendered Envoy configuration."""
    text = config_path.read_text()
    config = yaml.safe_load(text)
    for cluster in config["static_resources"]["clusters"]:
        port = spares.get(cluster["name"])
        if port is None:
            continue
        endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        endpoints.append({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}})
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    config_path.write_text(header + yaml.safe_dump(config, sort_keys=False, width=120))


def _config_path(proc: ManagedProcess) -> Path:
    argv = list(proc.argv)
    return Path(argv[argv.index("-c") + 1]) if "-c" in argv else DATA / "envoy" / "envoy.yaml"


def with_spares(components: list[Component], spares: dict[str, int]) -> list[Component]:
    for component in components:
        if component.name != "envoy" or component.make_process is None:
            continue
        render = component.make_process

        def make(render: object = render) -> ManagedProcess:
            assert callable(render)
            proc = render()
            assert isinstance(proc, ManagedProcess)
            add_spare_endpoints(_config_path(proc), spares)
            return proc

        component.make_process = make
    return components


SERVICE_SPECS = RUN / "chaos-services.json"


def write_service_specs(components: list[Component]) -> None:
    specs = {}
    for component in components:
        if component.make_process is None or not component.url.startswith("grpc://"):
            continue
        proc = component.make_process()
        specs[component.name] = {
            "argv": list(proc.argv),
            "env": dict(proc.env),
            "log": str(proc.log_path),
            "cwd": str(proc.cwd) if proc.cwd else None,
        }
    SERVICE_SPECS.write_text(json.dumps(specs, indent=2))


class ChaosSupervisor(Supervisor):
    """The runtime's supervisor, except that a held component stays down."""

    def _tend(self, c: Component) -> None:
        st = self.states[c.name]
        if st.phase == "backoff" and (HOLD_DIR / c.name).exists():
            st.next_start_at = time.time() + 0.3
            st.error = "held down by the chaos suite"
            return
        super()._tend(c)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    RUN.mkdir(parents=True, exist_ok=True)
    HOLD_DIR.mkdir(parents=True, exist_ok=True)
    (RUN / "supervisor.pid").write_text(str(os.getpid()))
    components = with_spares(local_components(), spare_ports())
    write_service_specs(components)
    return ChaosSupervisor(components).run()


if __name__ == "__main__":
    sys.exit(main())
