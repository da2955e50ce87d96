"""Command line of the viewpage service.

    python -m services.viewpage                    # serve gRPC + the board's consumers until SIGTERM
    python -m services.viewpage rebuild [--force]  # replay every stream into a fresh generation, switch, drop the old

`rebuild` runs beside the serving replicas (they keep serving reads and applying events, into
the new generation too); `--force` takes over from a rebuild that died half-way.
Settings come from the environment (`VIEWPAGE_*`, see services.viewpage.settings).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from services.kit.logging import configure_logging
from services.kit.server import run_service
from services.viewpage.adapters.grpc_api import PUBLIC_METHODS
from services.viewpage.bootstrap import ViewpageApp, rebuild
from services.viewpage.settings import ViewpageSettings

log = logging.getLogger("services.viewpage")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.viewpage", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("serve", "rebuild"), default="serve")
    parser.add_argument("--force", action="store_true", help="rebuild even if another rebuild is marked as running")
    args = parser.parse_args(argv)
    settings = ViewpageSettings()
    if args.command == "rebuild":
        configure_logging(settings.service_name, settings.log_level)
        report = asyncio.run(rebuild(settings, force=args.force))
        log.info(
            "board rebuilt",
            extra={
                "generation": report.generation,
                "replaced": report.replaced,
                "events": report.events,
                "seconds": round(report.seconds, 3),
            },
        )
        print(
            f"rebuilt generation {report.generation} from {report.events} events in {report.seconds:.2f} s "
            f"(replaced generation {report.replaced}, {report.deleted_keys} keys deleted)"
        )
        sys.exit(0)
    app = ViewpageApp(settings)
    run_service(settings, app.register, public_methods=PUBLIC_METHODS, on_startup=[app.start], on_shutdown=[app.stop])
