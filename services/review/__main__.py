"""`python -m services.review [serve|migrate]`: see services.review.entrypoints.cli."""

from services.review.entrypoints.cli import main

main()
