"""Account use cases: customers sign up, the admin command adds users (managers among them) and
clients, and the idempotent demo seed of a development stack.

Sign-up makes a customer and nothing else: the e-mail address is the account's username (signing
in takes it) and its e-mail claim; an address already taken, in any case, is ALREADY_EXISTS; the
password policy's refusal names what is wrong. Managers come only from `add-user`.

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

from services.identity.domain.model import (
    Client,
    Role,
    User,
    check_client_id,
    normalise_email,
    normalise_username,
    parse_roles,
)
from services.identity.service_layer.dependencies import IdentityDependencies
from services.kit.errors import AlreadyExists, FieldViolation, InvalidArgument

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
    checked_email = normalise_email(email) if email else None
    deps.password_policy.check(password, name)
    user = User(
        id=str(uuid.uuid4()),
        username=name,
        password_hash=await deps.hasher.hash(password),
        roles=checked_roles,
        email=checked_email,
    )
    await deps.users.add(user)
    log.info("user added", extra={"username": name, "roles": sorted(user.roles)})
    return user


async def remove_user(deps: IdentityDependencies, username: str) -> bool:
    """Delete a person's account (an administrator's command): they can no longer sign in or
    renew a session; access tokens already issued end within their lifetime. False when the
    account did not exist."""
    name = normalise_username(username)
    removed = await deps.users.remove(name)
    log.info("user removed" if removed else "no such user to remove", extra={"username": name})
    return removed


async def sign_up(deps: IdentityDependencies, email: str, password: str) -> User:
    """A new customer account named by its e-mail address. InvalidArgument (every bad field at
    once), AlreadyExists when the address is taken."""
    violations: list[FieldViolation] = []
    address = ""
    try:
        address = normalise_email(email)
    except InvalidArgument as error:
        violations += error.violations
    try:
        # the password may not contain the address's local part (the name a person picks; a very
        # short one would forbid half the alphabet), nor the whole address
        local = address.split("@", 1)[0]
        deps.password_policy.check(password, local if len(local) >= 4 else address)
    except InvalidArgument as error:
        violations += error.violations
    if violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations).replace("password:", "the password")
        raise InvalidArgument(message, tuple(violations))
    user = User(
        id=str(uuid.uuid4()),
        username=address,
        password_hash=await deps.hasher.hash(password),
        roles=frozenset({Role.CUSTOMER}),
        email=address,
    )
    try:
        await deps.users.add(user)
    except AlreadyExists:
        # the address is the username too: whichever unique index refused it, say it the same way
        raise AlreadyExists("user", address, "an account with this e-mail address already exists") from None
    log.info("customer signed up", extra={"user_id": user.id})
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
