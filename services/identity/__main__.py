"""`python -m services.identity [serve|migrate|rotate-keys|seed-demo|add-user|add-client]`:
see services.identity.entrypoints.cli."""

from services.identity.entrypoints.cli import main

main()
