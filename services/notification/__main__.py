"""`python -m services.notification [serve|migrate]`: see services.notification.entrypoints.cli."""

from services.notification.entrypoints.cli import main

main()
