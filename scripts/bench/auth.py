"""Tokens for the benchmark's callers: one manager (seeds the catalog) and a pool of customers.

Today they are minted with the development issuer whose key the stack's services trust
(`<data>/auth`, see scripts/stack/devauth.py). When the identity service issues tokens, only
`acquire_tokens` changes (e.g. a client-credentials or password grant at its token endpoint).
Customers are minted up front: signing RS256 costs about a millisecond of CPU, which must not
land inside the measured window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

Metadata = tuple[tuple[str, str], ...]

TOKEN_TTL_S = 2 * 3600


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


def acquire_tokens(data_dir: Path, run_tag: str, customers: int) -> Tokens:
    """The manager's and `customers` customers' call metadata for the stack whose data is in `data_dir`."""
    from scripts.stack.devauth import DevIssuer

    issuer = DevIssuer(data_dir / "auth")
    manager = _bearer(issuer.mint(f"bench-manager-{run_tag}", {"manager"}, ttl_s=TOKEN_TTL_S))
    pool = []
    for i in range(customers):
        subject = f"bench-{run_tag}-customer-{i}"
        token = issuer.mint(subject, {"customer"}, ttl_s=TOKEN_TTL_S, email=f"{subject}@bench.test")
        pool.append(Customer(subject, _bearer(token)))
    return Tokens(manager, tuple(pool))
