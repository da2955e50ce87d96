"""`python -m services.payment [serve|migrate]`: see services.payment.entrypoints.cli."""

from services.payment.entrypoints.cli import main

main()
