"""Tokens for the benchmark's callers: one manager (seeds the catalog) and a pool of customers.

All of it happens in `acquire_tokens`, before the load: signing or fetching a token costs CPU
that must not land inside the measured window. Two sources, chosen by what the stack runs:
the identity service when it is one of the stack's components (tokens from its OAuth2 token
endpoint, short-lived: 15 minutes by default), else the development issuer whose key the
services trust (`<data>/auth`, scripts/stack/devauth.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

Metadata = tuple[tuple[str, str], ...]

TOKEN_TTL_S = 2 * 3600
IDENTITY_CUSTOMERS = 24  # accounts created per run when the identity service issues the tokens
DEMO_MANAGER = ("demo-manager", "popcorn-manager")  # seeded by the local runtime (scripts/stack/edge.py)


@dataclass(frozen=True)
class Customer:
    subject: str
    metadata: Metadata


@dataclass(frozen=True)
class Tokens:
    manager: Metadata
    customers: tuple[Customer, ...]


def _bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def acquire_tokens(data_dir: Path, component_urls: Mapping[str, str], run_tag: str, customers: int) -> Tokens:
    """The manager's and the customers' call metadata for the stack whose data is in `data_dir`.

    A stack with an `identity` component issues its own tokens (OAuth2 password grant; customer
    accounts are created with its admin command); without one, the services trust the
    development issuer's key in `<data>/auth`. Blocking: call it from a thread."""
    if "identity" in component_urls:
        return _from_identity(data_dir, component_urls, run_tag, min(customers, IDENTITY_CUSTOMERS))
    return _from_dev_issuer(data_dir, run_tag, customers)


def _from_dev_issuer(data_dir: Path, run_tag: str, customers: int) -> Tokens:
    from scripts.stack.devauth import DevIssuer

    issuer = DevIssuer(data_dir / "auth")
    manager = _bearer(issuer.mint(f"bench-manager-{run_tag}", {"manager"}, ttl_s=TOKEN_TTL_S))
    pool = []
    for i in range(customers):
        subject = f"bench-{run_tag}-customer-{i}"
        token = issuer.mint(subject, {"customer"}, ttl_s=TOKEN_TTL_S, email=f"{subject}@bench.test")
        pool.append(Customer(subject, _bearer(token)))
    return Tokens(manager, tuple(pool))


def _password_grant(token_url: str, username: str, password: str) -> str:
    reply = httpx.post(
        token_url, data={"grant_type": "password", "username": username, "password": password}, timeout=30
    )
    reply.raise_for_status()
    return str(reply.json()["access_token"])


def _from_identity(data_dir: Path, component_urls: Mapping[str, str], run_tag: str, customers: int) -> Tokens:
    """Tokens from the identity service: the demo manager the runtime seeds, and customer accounts
    created for this run with `python -m services.identity add-user` (a few at a time: each
    hashes its password with argon2id)."""
    token_url = component_urls["identity"].rstrip("/") + "/oauth2/token"
    manager = _bearer(_password_grant(token_url, *DEMO_MANAGER))
    admin_url = urlparse(component_urls["postgres"])
    env = {
        **os.environ,
        "IDENTITY_DATABASE_URL": admin_url._replace(path="/identity").geturl(),
        "IDENTITY_KEY_ENCRYPTION_KEY": (data_dir / "identity" / "key-encryption-key").read_text().strip(),
        "IDENTITY_LOG_LEVEL": "WARNING",
    }
    password = secrets.token_urlsafe(18)

    def customer(i: int) -> Customer:
        username = f"bench-{run_tag}-customer-{i}"
        argv = [sys.executable, "-m", "services.identity", "add-user", username, "--role", "customer"]
        argv += ["--email", f"{username}@bench.test"]
        done = subprocess.run(
            argv, input=password + "\n", env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"identity add-user {username} failed: {done.stderr[-500:]}")
        token = _password_grant(token_url, username, password)
        return Customer(username, _bearer(token))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return Tokens(manager, tuple(pool.map(customer, range(customers))))
