"""`python -m services.viewpage [serve|rebuild]`: see services.viewpage.entrypoints.cli."""

from services.viewpage.entrypoints.cli import main

main()
