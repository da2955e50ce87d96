"""`python -m services.web [serve]`: see services.web.entrypoints.cli."""

from services.web.entrypoints.cli import main

main()
