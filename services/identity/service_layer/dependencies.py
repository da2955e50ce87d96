"""Everything the identity use cases need, gathered by the composition root (bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.identity.domain.keys import KeyPolicy
from services.identity.domain.passwords import PasswordPolicy
from services.identity.domain.refresh import RefreshPolicy
from services.identity.domain.throttling import ThrottlePolicy
from services.identity.domain.tokens import TokenPolicy
from services.identity.service_layer.ports import (
    AttemptLog,
    ClientRepository,
    Clock,
    KeyFactory,
    KeySealer,
    KeyStore,
    RefreshTokenStore,
    SecretHasher,
    TokenSigner,
    UserRepository,
)


@dataclass
class IdentityDependencies:
    users: UserRepository
    clients: ClientRepository
    attempts: AttemptLog
    keys: KeyStore
    key_factory: KeyFactory
    sealer: KeySealer
    signer: TokenSigner
    hasher: SecretHasher
    clock: Clock
    token_policy: TokenPolicy
    key_policy: KeyPolicy
    throttle_policy: ThrottlePolicy
    refresh_tokens: RefreshTokenStore
    refresh_policy: RefreshPolicy
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    algorithm: str = "RS256"
