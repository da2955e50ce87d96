"""Command line of the payment service.

    python -m services.payment           # migrate, then serve gRPC + outbox relay + consumer until SIGTERM
    python -m services.payment migrate   # apply the database migrations and exit

Settings come from the environment (`PAYMENT_*`, see services.payment.settings).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from services.kit.logging import configure_logging
from services.kit.server import run_service
from services.payment.adapters.store import migrate
from services.payment.bootstrap import PaymentApp
from services.payment.settings import PaymentSettings

log = logging.getLogger("services.payment")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.payment", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("serve", "migrate"), default="serve")
    args = parser.parse_args(argv)
    settings = PaymentSettings()
    if args.command == "migrate":
        configure_logging(settings.service_name, settings.log_level)
        applied = asyncio.run(migrate(settings.database_url))
        log.info("payment database migrated", extra={"applied": applied})
        sys.exit(0)
    # protovalidate's CEL evaluator traces every value it checks at DEBUG, the card's CVC
    # included (the redaction filter knows card numbers, not three digits): keep it quiet.
    logging.getLogger("celpy").setLevel(logging.WARNING)
    app = PaymentApp(settings)
    run_service(settings, app.register, on_startup=[app.start], on_shutdown=[app.stop])
