"""`cinema`: the command line of the Cinema system, speaking REST/JSON to the ingress.

Modules: `main` (the commands, Typer), `api` (the HTTP client and the mapping of its errors to
exit codes), `session` (the saved sign-in), `render` (Rich tables, JSON), `seed` (demo catalog).
"""
