"""Command line of the notification service.

    python -m services.notification           # migrate, then serve gRPC + consumers + delivery loop until SIGTERM
    python -m services.notification migrate   # apply the database migrations and exit

Settings come from the environment (`NOTIFICATION_*`, see services.notification.settings).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from services.kit.logging import configure_logging
from services.kit.server import run_service
from services.notification.adapters.store import migrate
from services.notification.bootstrap import NotificationApp
from services.notification.settings import NotificationSettings

log = logging.getLogger("services.notification")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.notification", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("serve", "migrate"), default="serve")
    args = parser.parse_args(argv)
    settings = NotificationSettings()
    if args.command == "migrate":
        configure_logging(settings.service_name, settings.log_level)
        applied = asyncio.run(migrate(settings.database_url))
        log.info("notification database migrated", extra={"applied": applied})
        sys.exit(0)
    logging.getLogger("celpy").setLevel(logging.WARNING)
    app = NotificationApp(settings)
    run_service(settings, app.register, on_startup=[app.start], on_shutdown=[app.stop])
