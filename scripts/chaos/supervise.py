"""The supervisor of a chaos stack: `make up`'s own supervisor and components (every service with
its instances, `CINEMA_INSTANCES`), plus holds, which live here so that the runtime stays as it is:
while the file `<data>/run/hold/<component>` exists, a component that exited is not restarted (the
"keep the movie service down" scenarios, and payment held down past its outage window).

Run as `python -m scripts.chaos.supervise` with the scratch stack's environment.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from scripts.stack.components import Component, local_components
from scripts.stack.supervisor import RUN, Supervisor

HOLD_DIR = RUN / "hold"

log = logging.getLogger("cinema.chaos.supervisor")


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
    return ChaosSupervisor(local_components()).run()


if __name__ == "__main__":
    sys.exit(main())
