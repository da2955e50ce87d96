"""Tokens for the benchmark's callers: one manager (seeds the catalog) and a pool of customers.

All of it happens in `acquire_tokens`, before the load: fetching a token costs CPU that must
not land inside the measured window. The tokens come from the stack's identity service (its
OAuth2 token endpoint; short-lived: 15 minutes by default).
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

from scripts.stack import edge

Metadata = tuple[tuple[str, str], ...]

IDENTITY_CUSTOMERS = 24  # accounts created per run when the identity service issues the tokens


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
    """The manager's and the customers' call metadata for the stack whose data is in `data_dir`:
    the demo manager the runtime seeds, and customer accounts created for this run with identity's
    admin command. Blocking: call it from a thread."""
    if "identity" not in component_urls:
        raise RuntimeError("the stack runs no identity service: nothing can issue the benchmark's tokens")
    return _from_identity(data_dir, component_urls, run_tag, min(customers, IDENTITY_CUSTOMERS))


def customer_username(run_tag: str, i: int) -> str:
    return f"bench-{run_tag}-customer-{i}"


def identity_admin_env(data_dir: Path, component_urls: Mapping[str, str]) -> dict[str, str]:
    """The environment of identity's admin commands (add-user, remove-user) for the stack in `data_dir`."""
    admin_url = urlparse(component_urls["postgres"])
    return {
        **os.environ,
        "IDENTITY_DATABASE_URL": admin_url._replace(path="/identity").geturl(),
        "IDENTITY_KEY_ENCRYPTION_KEY": edge.key_encryption_key(data_dir / "identity"),
        "IDENTITY_LOG_LEVEL": "WARNING",
    }


def remove_customers(data_dir: Path, component_urls: Mapping[str, str], run_tag: str) -> str:
    """Delete the customer accounts a run created (`python -m services.identity remove-user`);
    returns the command's report line."""
    names = [customer_username(run_tag, i) for i in range(IDENTITY_CUSTOMERS)]
    done = subprocess.run(
        [sys.executable, "-m", "services.identity", "remove-user", *names],
        env=identity_admin_env(data_dir, component_urls),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"identity remove-user failed: {done.stderr[-500:]}")
    return done.stdout.strip()


def _from_identity(data_dir: Path, component_urls: Mapping[str, str], run_tag: str, customers: int) -> Tokens:
    """Tokens from the identity service: the demo manager the runtime seeds, and customer accounts
    created for this run with `python -m services.identity add-user` (a few at a time: each
    hashes its password with argon2id)."""
    token_url = component_urls["identity"].rstrip("/") + "/oauth2/token"
    manager = _bearer(edge.password_token(token_url, *edge.DEMO_MANAGER))
    env = identity_admin_env(data_dir, component_urls)
    password = secrets.token_urlsafe(18)

    def customer(i: int) -> Customer:
        username = customer_username(run_tag, i)
        argv = [sys.executable, "-m", "services.identity", "add-user", username, "--role", "customer"]
        argv += ["--email", f"{username}@bench.test"]
        done = subprocess.run(
            argv, input=password + "\n", env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"identity add-user {username} failed: {done.stderr[-500:]}")
        token = edge.password_token(token_url, username, password)
        return Customer(username, _bearer(token))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return Tokens(manager, tuple(pool.map(customer, range(customers))))
