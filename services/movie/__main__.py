"""`python -m services.movie`: run the movie service (indexes at start-up, gRPC, outbox relays,
review consumer, deletion sweeper) until SIGTERM.
`python -m services.movie migrate`: only create the indexes, then exit.
"""

from __future__ import annotations

import asyncio
import sys

from services.kit.logging import configure_logging
from services.movie.bootstrap import main, migrate
from services.movie.settings import MovieSettings


def run(argv: list[str]) -> int:
    if argv[:1] == ["migrate"]:
        settings = MovieSettings()
        configure_logging(settings.service_name, settings.log_level)
        asyncio.run(migrate(settings))
        return 0
    if argv:
        print("usage: python -m services.movie [migrate]", file=sys.stderr)
        return 2
    main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
