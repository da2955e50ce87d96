"""Who can get a token: people (users, with a username and password) and clients (tools and
services, with a client id and secret), and the roles a token may carry."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from services.kit.errors import InvalidArgument


class Role(StrEnum):
    CUSTOMER = "customer"
    MANAGER = "manager"
    SERVICE = "service"


ROLE_NAMES: frozenset[str] = frozenset(role.value for role in Role)

# Lower-case letters, digits and a few separators; an e-mail address fits.
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{2,63}$")
_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# A deliberately plain address: local part, @, a domain with at least one dot; no quoting, no
# comments, no IP literals. What sign-up accepts is also a valid username (it becomes one).
_EMAIL = re.compile(r"^[a-z0-9][a-z0-9._+-]*@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,63}$")
EMAIL_MAX_LENGTH = 64  # a username's limit, since the address is the account's name


def parse_roles(values: Iterable[str], field: str = "roles") -> frozenset[Role]:
    """Role names -> roles; InvalidArgument naming the unknown one. At least one is required."""
    roles: set[Role] = set()
    for value in values:
        name = value.strip().lower()
        if name not in ROLE_NAMES:
            raise InvalidArgument.for_field(field, f"unknown role {value!r} (known: {', '.join(sorted(ROLE_NAMES))})")
        roles.add(Role(name))
    if not roles:
        raise InvalidArgument.for_field(field, "at least one role is required")
    return frozenset(roles)


def normalise_username(raw: str) -> str:
    """Usernames compare case-insensitively: stored and looked up in lower case."""
    username = raw.strip().lower()
    if not _USERNAME.fullmatch(username):
        raise InvalidArgument.for_field(
            "username", "3 to 64 characters: letters, digits and . _ @ + -, starting with a letter or digit"
        )
    return username


def normalise_email(raw: str, field: str = "email") -> str:
    """An e-mail address as accounts keep it: trimmed and lower-cased; InvalidArgument otherwise."""
    email = raw.strip().lower()
    if not email:
        raise InvalidArgument.for_field(field, "an e-mail address is required")
    if len(email) > EMAIL_MAX_LENGTH:
        raise InvalidArgument.for_field(field, f"at most {EMAIL_MAX_LENGTH} characters")
    if not _EMAIL.fullmatch(email) or ".." in email:
        raise InvalidArgument.for_field(
            field, "not an e-mail address we accept (like name@example.com: letters, digits and . _ + -)"
        )
    return email


def check_client_id(raw: str) -> str:
    client_id = raw.strip()
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidArgument.for_field(
            "client_id", "2 to 64 characters: lower-case letters, digits and . _ -, starting with a letter or digit"
        )
    return client_id


@dataclass(frozen=True)
class User:
    """A person who signs in with a password (grant_type=password)."""

    id: str
    username: str
    password_hash: str
    roles: frozenset[Role]
    email: str | None = None


@dataclass(frozen=True)
class Client:
    """A tool or service that authenticates with its own secret (grant_type=client_credentials)."""

    client_id: str
    secret_hash: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class Principal:
    """Whom a token is about: `subject` is the stable `sub` (a user's id, a client's id)."""

    subject: str
    roles: frozenset[Role]
    username: str | None = None
    email: str | None = None
    client_id: str | None = None

    @classmethod
    def of_user(cls, user: User, client_id: str | None = None) -> Principal:
        return cls(subject=user.id, roles=user.roles, username=user.username, email=user.email, client_id=client_id)

    @classmethod
    def of_client(cls, client: Client) -> Principal:
        return cls(subject=client.client_id, roles=client.roles, client_id=client.client_id)
