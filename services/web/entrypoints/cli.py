"""Command line of the web service.

    python -m services.web [serve]     # serve the page and its live updates until SIGTERM

Settings come from the environment (`WEB_*`, see services.web.settings).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Sequence

from services.kit.logging import configure_logging
from services.web.bootstrap import WebApp
from services.web.entrypoints.server import WebServer
from services.web.settings import WebSettings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.web", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("serve",), default="serve")
    parser.parse_args(argv)
    settings = WebSettings()
    configure_logging(settings.service_name, settings.log_level)
    _run(WebServer(WebApp(settings)).serve_until_signalled())
    sys.exit(0)


def _run(main: Awaitable[None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]
