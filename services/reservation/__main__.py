"""`python -m services.reservation`: run the reservation service (gRPC, outbox relay, catalog
consumer, reconciler) until SIGTERM. At start-up it checks the migrations (idempotent, under an
advisory lock: about 20 ms when none is pending) and applies any the separate step has not.
`python -m services.reservation migrate`: only apply the database migrations, then exit (the
separate step: the chart's migration Job, before the pods of a release).
"""

from __future__ import annotations

import asyncio
import sys

from services.kit.logging import configure_logging
from services.reservation.bootstrap import main, migrate
from services.reservation.settings import ReservationSettings


def run(argv: list[str]) -> int:
    if argv[:1] == ["migrate"]:
        settings = ReservationSettings()
        configure_logging(settings.service_name, settings.log_level)
        asyncio.run(migrate(settings))
        return 0
    if argv:
        print("usage: python -m services.reservation [migrate]", file=sys.stderr)
        return 2
    main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
