"""Command line of the identity service.

    python -m services.identity [serve]                 # migrate, ensure a signing key, serve HTTP until SIGTERM
    python -m services.identity migrate                 # apply the database migrations and exit
    python -m services.identity rotate-keys [--immediately]
        # publish the next signing key now; it signs one JWKS cache period later
        # (IDENTITY_KEY_PUBLISH_AHEAD_S), or at once with --immediately (the current key leaked)
    python -m services.identity seed-demo --client-secret-file PATH
        # idempotent: demo-customer / popcorn-customer, demo-manager / popcorn-manager, and the
        # client `reservation` (role service) whose secret is written to PATH (mode 0600)
    python -m services.identity add-user NAME --role customer [--role manager] [--email E]
        # password read from standard input (first line) or asked at the terminal; the e-mail
        # address goes into the user's tokens (the `email` claim notification mails to)
    python -m services.identity add-client ID --role service [--secret-file PATH]
        # the generated secret goes to PATH (0600), or to standard output when no PATH is given

Settings come from the environment (`IDENTITY_*`, see services.identity.settings). Exit codes:
0 done, 1 refused (e.g. the user exists, the password is too weak), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from services.identity.bootstrap import IdentityApp
from services.identity.entrypoints.server import IdentityServer
from services.identity.service_layer import accounts
from services.identity.settings import IdentitySettings
from services.kit.errors import DomainError
from services.kit.logging import configure_logging

log = logging.getLogger("services.identity")


def write_secret(path: Path, secret: str) -> None:
    """Write a secret readable by its owner only (created 0600, never world-readable for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secret + "\n")
    path.chmod(0o600)


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def read_password(prompt: bool) -> str:
    if prompt and sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _with_app(settings: IdentitySettings, action: Callable[[IdentityApp], Awaitable[None]]) -> None:
    app = IdentityApp(settings)
    try:
        await app.open()
        await action(app)
    finally:
        await app.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.identity", description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the HTTP API until SIGTERM (the default)")
    commands.add_parser("migrate", help="apply the database migrations")
    rotate_keys = commands.add_parser("rotate-keys", help="publish the next signing key now (it signs a little later)")
    rotate_keys.add_argument("--immediately", action="store_true", help="sign with it at once (the current key leaked)")
    seed = commands.add_parser("seed-demo", help="create the demo accounts and the reservation client")
    seed.add_argument("--client-secret-file", type=Path, required=True)
    user = commands.add_parser("add-user", help="add a person (password from stdin or a prompt)")
    user.add_argument("username")
    user.add_argument("--role", action="append", required=True, dest="roles")
    user.add_argument("--email", help="the person's e-mail address (tokens carry it; notification mails to it)")
    remove = commands.add_parser("remove-user", help="delete accounts (their sessions can no longer be renewed)")
    remove.add_argument("usernames", nargs="+", metavar="username")
    client = commands.add_parser("add-client", help="add a client with a generated secret")
    client.add_argument("client_id")
    client.add_argument("--role", action="append", required=True, dest="roles")
    client.add_argument("--secret-file", type=Path)
    args = parser.parse_args(argv)

    settings = IdentitySettings()
    configure_logging(settings.service_name, settings.log_level)
    command = args.command or "serve"
    if command == "serve":
        _run(IdentityServer(IdentityApp(settings)).serve_until_signalled())
        sys.exit(0)

    async def migrate(app: IdentityApp) -> None:
        log.info("identity database migrated")

    async def rotate(app: IdentityApp) -> None:
        kid = await app.rotate_now(immediately=args.immediately)
        log.info("signing key rotated by command", extra={"kid": kid, "immediately": args.immediately})

    async def seed_demo(app: IdentityApp) -> None:
        secret = await accounts.seed_demo(app.deps, read_secret(args.client_secret_file))
        if secret is not None:
            write_secret(args.client_secret_file, secret)
        log.info(
            "demo accounts ready",
            extra={
                "users": [demo.username for demo in accounts.DEMO_USERS],
                "client_id": accounts.DEMO_SERVICE_CLIENT,
                "client_secret_file": str(args.client_secret_file),
                "client_secret_written": secret is not None,
            },
        )

    async def add_user(app: IdentityApp) -> None:
        await accounts.add_user(app.deps, args.username, password, args.roles, args.email)

    async def remove_users(app: IdentityApp) -> None:
        removed = [name for name in args.usernames if await accounts.remove_user(app.deps, name)]
        print(f"removed {len(removed)} of {len(args.usernames)} accounts", flush=True)

    async def add_client(app: IdentityApp) -> None:
        _client, secret = await accounts.add_client(app.deps, args.client_id, args.roles)
        if args.secret_file is not None:
            write_secret(args.secret_file, secret)
        else:
            print(secret, flush=True)  # the operator asked for it; never logged

    actions: dict[str, Callable[[IdentityApp], Awaitable[None]]] = {
        "migrate": migrate,
        "rotate-keys": rotate,
        "seed-demo": seed_demo,
        "add-user": add_user,
        "remove-user": remove_users,
        "add-client": add_client,
    }
    password = read_password(prompt=True) if command == "add-user" else ""
    try:
        _run(_with_app(settings, actions[command]))
    except DomainError as error:
        log.error("%s refused: %s", command, error.message)
        sys.exit(1)
    sys.exit(0)


def _run(main: Awaitable[None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]
