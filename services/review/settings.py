"""Settings of the review service, read once at start-up from `REVIEW_*` variables.

Besides the kit's variables (`REVIEW_GRPC_PORT` default 15054, `REVIEW_METRICS_PORT` default
19104, `REVIEW_JWKS_SOURCE`, `REVIEW_JWT_ISSUER`, `REVIEW_JWT_AUDIENCE`, `REVIEW_LOG_LEVEL`,
`REVIEW_DRAIN_S` ..., see services.kit.settings), the service reads:

- `REVIEW_MONGO_URL` (default `mongodb://127.0.0.1:17017/`): MongoDB or FerretDB.
- `REVIEW_MONGO_DATABASE` (default `review`): the service's own database.
- `REVIEW_MONGO_TIMEOUT_MS` (default 2000): server selection and connect timeout, so that a
  request answers UNAVAILABLE within about this long when the store is down.
- `REVIEW_NATS_URL` (default `nats://127.0.0.1:14222`): NATS JetStream (events out).
- `REVIEW_RELAY_POLL_INTERVAL_S` (default 30): how often the outbox relay looks for pending
  events it was not woken for (another replica's writes, events left by a crashed process); it
  reads the outbox's marks (O(pending events)), not the reviews (services.kit.events.doc_outbox).
- `REVIEW_RETRY_AFTER_S` (default 1): the retry hint of an UNAVAILABLE answer.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings


class ReviewSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEW_", extra="ignore", frozen=True)

    service_name: str = "review"
    grpc_port: int = Field(default=15054, ge=0, le=65535)
    metrics_port: int = Field(default=19104, ge=0, le=65535)

    mongo_url: str = "mongodb://127.0.0.1:17017/"
    mongo_database: str = "review"
    mongo_timeout_ms: int = Field(default=2000, ge=100)
    nats_url: str = "nats://127.0.0.1:14222"

    relay_poll_interval_s: float = Field(default=30.0, gt=0)
    retry_after_s: float = Field(default=1.0, gt=0)
