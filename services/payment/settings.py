"""Settings of the payment service, read once from the environment (prefix `PAYMENT_`).

Besides the kit's variables (`PAYMENT_GRPC_PORT`, `PAYMENT_JWKS_SOURCE`, `PAYMENT_JWT_ISSUER`,
`PAYMENT_JWT_AUDIENCE`, `PAYMENT_LOG_LEVEL`, `PAYMENT_DRAIN_S` ..., see services.kit.settings):

- `PAYMENT_DATABASE_URL` (default `postgresql://postgres:cinema-dev@127.0.0.1:15432/payment`).
- `PAYMENT_DB_POOL_MIN` / `PAYMENT_DB_POOL_MAX` (default 2 / 10).
- `PAYMENT_NATS_URL` (default `nats://127.0.0.1:14222`).
- `PAYMENT_PROCESSOR_LATENCY_MS` (default 0): every card authorization takes this long ...
- `PAYMENT_PROCESSOR_LATENCY_JITTER_MS` (default 0): ... plus a uniform random 0..this.
- `PAYMENT_PROCESSOR_FAILURE_RATE` (default 0, 0..1): share of authorizations that fail with a
  processor error (the caller gets UNAVAILABLE with a retry hint; nothing is charged or stored).
- `PAYMENT_RETRY_AFTER_S` (default 1): the retry hint of that UNAVAILABLE.
- `PAYMENT_AUTHORIZATION_LIMIT_S` (default 5): an authorization runs to its end even when its
  caller's deadline passes (a repeat joins it), but the processor gets at most this long; past
  it the authorization is abandoned, uncharged. Reservation's `RESERVATION_PAYMENT_WORK_LIMIT_S`
  must not be smaller.

The gRPC port defaults to 15052 and the metrics port to 19102.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings


class PaymentSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_")

    service_name: str = "payment"
    grpc_port: int = Field(default=15052, ge=0, le=65535)
    metrics_port: int = Field(default=19102, ge=0, le=65535)

    database_url: str = "postgresql://postgres:cinema-dev@127.0.0.1:15432/payment"
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    nats_url: str = "nats://127.0.0.1:14222"

    processor_latency_ms: float = Field(default=0.0, ge=0)
    processor_latency_jitter_ms: float = Field(default=0.0, ge=0)
    processor_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: float = Field(default=1.0, gt=0)
    authorization_limit_s: float = Field(default=5.0, gt=0)
