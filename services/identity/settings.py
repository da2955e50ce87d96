"""Settings of the identity service, read once from the environment (prefix `IDENTITY_`).

From the kit (services.kit.settings) it uses `IDENTITY_SERVICE_NAME`, `IDENTITY_LOG_LEVEL`,
`IDENTITY_OTLP_ENDPOINT`, `IDENTITY_DRAIN_S` and `IDENTITY_SHUTDOWN_GRACE_S`; the gRPC and JWT
verification variables of the kit do not apply (identity serves HTTP and issues tokens).

HTTP and identity of the issuer:
- `IDENTITY_HTTP_HOST` (default `127.0.0.1`), `IDENTITY_HTTP_PORT` (default `18081`; `0` = any free port).
- `IDENTITY_PUBLIC_URL` (default `http://127.0.0.1:18081`): the base URL clients reach us at;
  the discovery document's `token_endpoint` and `jwks_uri` are built on it.
- `IDENTITY_ISSUER` (default = `IDENTITY_PUBLIC_URL`): the `iss` of every token and the
  `issuer` of discovery. Services verify with `<PREFIX>_JWT_ISSUER` set to the same value.
- `IDENTITY_AUDIENCE` (default `cinema`): the `aud` of every token.
- `IDENTITY_MAX_FORM_BYTES` (default 4096): larger token requests are refused (413).
- `IDENTITY_JWKS_MAX_AGE_S` (default 60): `Cache-Control: max-age` of the JWKS.
- `IDENTITY_SIGNUP_ENABLED` (default true): customers may open an account (`POST /v1/accounts`).
- `IDENTITY_TRUSTED_PROXIES` (default `127.0.0.0/8,::1/128`): peers (the ingress Envoy, an Istio
  sidecar) whose `IDENTITY_CLIENT_ADDRESS_HEADER` (default `x-envoy-external-address`, which the
  edge Envoy sets itself and overwrites when a client sends one) names the client; from any other
  peer, and when the header is absent, the client is the peer's own address.

Tokens:
- `IDENTITY_USER_TOKEN_TTL_S` (default 900): lifetime of a token for a person (password grant).
- `IDENTITY_CLIENT_TOKEN_TTL_S` (default 3600): lifetime of a token for a client (client credentials).
- `IDENTITY_REFRESH_TOKEN_TTL_S` (default 1209600, 14 days): lifetime of a refresh token (a new
  one comes with every refresh); `IDENTITY_REFRESH_FAMILY_TTL_S` (default 2592000, 30 days): no
  refresh reaches beyond this from the password sign-in that started it.

Signing keys:
- `IDENTITY_KEY_ROTATION_DAYS` (default 30, fractions allowed): a key older than this is replaced
  by a new one automatically; checked every `IDENTITY_KEY_CHECK_INTERVAL_S` (default 60).
- `IDENTITY_KEY_CACHE_S` (default 5): how long a replica signs with the active key it read
  before reading it again (a rotation reaches every replica within this time).
- `IDENTITY_KEY_PUBLISH_AHEAD_S` (default 120): a new key is in the JWKS this long before it
  signs: the longest a verifier caches the JWKS (the local Envoy's `cache_duration`, 120 s; the
  services fetch again on an unknown kid). At least `IDENTITY_JWKS_MAX_AGE_S`.
- `IDENTITY_VERIFIER_LEEWAY_S` (default 60): clock skew verifiers may allow on `exp`; a retired
  key stays in the JWKS until rotation + key cache + longest token lifetime + this leeway.
- `IDENTITY_KEY_ENCRYPTION_KEY` (default empty): 32 bytes, base64url, that encrypt the private
  keys at rest (JWE `dir` + `A256GCM`). Empty: private keys are stored unencrypted and a warning
  is logged at start (development only); a database holding encrypted keys then refuses to start.
- `IDENTITY_RSA_KEY_BITS` (default 2048).

Passwords and throttling:
- `IDENTITY_ARGON2_TIME_COST` (3), `IDENTITY_ARGON2_MEMORY_KIB` (65536), `IDENTITY_ARGON2_PARALLELISM` (4):
  argon2id parameters (RFC 9106 low-memory profile); hashes made with other parameters are
  re-hashed at the next successful sign-in.
- `IDENTITY_HASH_CONCURRENCY` (default 4): argon2 computations at once (each takes the memory above).
- `IDENTITY_LOCKOUT_THRESHOLD` (default 5) failed attempts for one username (or client) from
  one client address lock that address out of it for `IDENTITY_LOCKOUT_S` (default 30); each
  further failure doubles that, up to `IDENTITY_LOCKOUT_MAX_S` (default 900). The count starts
  again after `IDENTITY_LOCKOUT_WINDOW_S` (default 900) without a failure or a lockout. Other
  addresses are never locked out by it.

Store:
- `IDENTITY_DATABASE_URL` (default `postgresql://postgres:cinema-dev@127.0.0.1:15432/identity`).
- `IDENTITY_DB_POOL_MIN` / `IDENTITY_DB_POOL_MAX` (default 1 / 10).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings

DEFAULT_PUBLIC_URL = "http://127.0.0.1:18081"


class IdentitySettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)

    service_name: str = "identity"
    metrics_enabled: bool = True  # served on the HTTP port at /metrics

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=18081, ge=0, le=65535)
    public_url: str = DEFAULT_PUBLIC_URL
    issuer: str = ""
    audience: str = "cinema"
    max_form_bytes: int = Field(default=4096, ge=256, le=1_048_576)
    jwks_max_age_s: int = Field(default=60, ge=0)
    signup_enabled: bool = True
    trusted_proxies: str = "127.0.0.0/8,::1/128"
    client_address_header: str = "x-envoy-external-address"

    user_token_ttl_s: int = Field(default=900, ge=1)
    client_token_ttl_s: int = Field(default=3600, ge=1)
    refresh_token_ttl_s: int = Field(default=14 * 86400, ge=1)
    refresh_family_ttl_s: int = Field(default=30 * 86400, ge=1)

    key_rotation_days: float = Field(default=30.0, gt=0)
    key_check_interval_s: float = Field(default=60.0, gt=0)
    key_cache_s: float = Field(default=5.0, ge=0)
    key_publish_ahead_s: float = Field(default=120.0, ge=0)
    verifier_leeway_s: int = Field(default=60, ge=0)
    key_encryption_key: str = Field(default="", repr=False)
    rsa_key_bits: int = Field(default=2048, ge=2048, le=8192)

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    hash_concurrency: int = Field(default=4, ge=1)

    lockout_threshold: int = Field(default=5, ge=1)
    lockout_window_s: float = Field(default=900.0, gt=0)
    lockout_s: float = Field(default=30.0, gt=0)
    lockout_max_s: float = Field(default=900.0, gt=0)

    database_url: str = "postgresql://postgres:cinema-dev@127.0.0.1:15432/identity"
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)

    @field_validator("public_url", "issuer")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @field_validator("key_encryption_key")
    @classmethod
    def _kek_is_32_bytes(cls, value: str) -> str:
        value = value.strip()
        if value and len(decode_key_encryption_key(value)) != 32:
            raise ValueError("IDENTITY_KEY_ENCRYPTION_KEY must be 32 bytes, base64url-encoded")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        trusted_networks(value)
        return value

    @field_validator("client_address_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def _pool_bounds(self) -> IdentitySettings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("IDENTITY_DB_POOL_MIN must not exceed IDENTITY_DB_POOL_MAX")
        if self.key_publish_ahead_s < self.jwks_max_age_s:
            raise ValueError("IDENTITY_KEY_PUBLISH_AHEAD_S must be at least IDENTITY_JWKS_MAX_AGE_S")
        if self.lockout_max_s < self.lockout_s:
            raise ValueError("IDENTITY_LOCKOUT_MAX_S must be at least IDENTITY_LOCKOUT_S")
        if self.refresh_family_ttl_s < self.refresh_token_ttl_s:
            raise ValueError("IDENTITY_REFRESH_FAMILY_TTL_S must be at least IDENTITY_REFRESH_TOKEN_TTL_S")
        return self

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return trusted_networks(self.trusted_proxies)

    @property
    def effective_issuer(self) -> str:
        """The `iss` of our tokens: IDENTITY_ISSUER, or the public URL when it is not set."""
        return self.issuer or self.public_url

    @property
    def kek_bytes(self) -> bytes | None:
        return decode_key_encryption_key(self.key_encryption_key) if self.key_encryption_key else None


def decode_key_encryption_key(value: str) -> bytes:
    """base64url (padding optional) -> bytes; ValueError when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("IDENTITY_KEY_ENCRYPTION_KEY is not base64url") from None


def trusted_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`127.0.0.0/8,::1/128` -> networks; ValueError naming the one that is not a network."""
    networks = []
    for part in value.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"IDENTITY_TRUSTED_PROXIES: {part.strip()!r} is not an address or network") from None
    return tuple(networks)
