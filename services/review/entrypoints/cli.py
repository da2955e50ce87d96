"""Command line of the review service.

    python -m services.review           # indexes, then gRPC + outbox relay until SIGTERM
    python -m services.review migrate   # create the indexes (idempotent) and exit

Settings come from the environment (`REVIEW_*`, see services.review.settings).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from services.kit.logging import configure_logging
from services.review.bootstrap import main as serve
from services.review.bootstrap import migrate
from services.review.settings import ReviewSettings

log = logging.getLogger("services.review")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.review", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("serve", "migrate"), default="serve")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        settings = ReviewSettings()
        configure_logging(settings.service_name, settings.log_level)
        indexes = asyncio.run(migrate(settings))
        log.info("review indexes ensured", extra={"indexes": indexes})
        sys.exit(0)
    serve()
