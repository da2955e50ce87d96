"""Account use cases: add users and clients, and the idempotent demo seed of a development stack.

Demo accounts (development only; the passwords are documented on purpose):
- `demo-customer` / `popcorn-customer`, role customer, e-mail demo-customer@example.test
- `demo-manager` / `popcorn-manager`, role manager, e-mail demo-manager@example.test
- client `reservation`, role service, with a generated secret (written to a file by the CLI).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from services.identity.domain.model import Client, Role, User, check_client_id, normalise_username, parse_roles
from services.identity.service_layer.dependencies import IdentityDependencies

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    roles: frozenset[Role]
    email: str


DEMO_USERS = (
    DemoUser("demo-customer", "popcorn-customer", frozenset({Role.CUSTOMER}), "demo-customer@example.test"),
    DemoUser("demo-manager", "popcorn-manager", frozenset({Role.MANAGER}), "demo-manager@example.test"),
)
DEMO_SERVICE_CLIENT = "reservation"


def new_client_secret() -> str:
    """256 bits of randomness, URL-safe (fits a form field and an HTTP Basic header)."""
    return secrets.token_urlsafe(32)


async def add_user(
    deps: IdentityDependencies, username: str, password: str, roles: Iterable[str], email: str | None = None
) -> User:
    name = normalise_username(username)
    checked_roles = parse_roles(roles)
    deps.password_policy.check(password, name)
    user = User(
        id=str(uuid.uuid4()),
        username=name,
        password_hash=await deps.hasher.hash(password),
        roles=checked_roles,
        email=email or None,
    )
    await deps.users.add(user)
    log.info("user added", extra={"username": name, "roles": sorted(user.roles)})
    return user


async def add_client(
    deps: IdentityDependencies, client_id: str, roles: Iterable[str], secret: str | None = None
) -> tuple[Client, str]:
    """Add a client; returns it and its secret (generated unless given)."""
    checked_id = check_client_id(client_id)
    secret = secret or new_client_secret()
    client = Client(client_id=checked_id, secret_hash=await deps.hasher.hash(secret), roles=parse_roles(roles))
    await deps.clients.add(client)
    log.info("client added", extra={"client_id": checked_id, "roles": sorted(client.roles)})
    return client, secret


async def seed_demo(deps: IdentityDependencies, known_client_secret: str | None) -> str | None:
    """Create the demo accounts that are missing; returns a new secret for the `reservation` client
    when it had to be made or reset (the known one, e.g. read from its file, no longer matches)."""
    for demo in DEMO_USERS:
        if await deps.users.get_by_username(demo.username) is None:
            await add_user(deps, demo.username, demo.password, demo.roles, demo.email)
    client = await deps.clients.get(DEMO_SERVICE_CLIENT)
    if client is None:
        _client, secret = await add_client(deps, DEMO_SERVICE_CLIENT, [Role.SERVICE])
        return secret
    if known_client_secret and await deps.hasher.verify(client.secret_hash, known_client_secret):
        return None
    secret = new_client_secret()
    await deps.clients.set_secret_hash(DEMO_SERVICE_CLIENT, await deps.hasher.hash(secret))
    log.info("client secret reset", extra={"client_id": DEMO_SERVICE_CLIENT})
    return secret
