"""Settings of the notification service, read once from the environment (prefix `NOTIFICATION_`).

Besides the kit's variables (`NOTIFICATION_GRPC_PORT`, `NOTIFICATION_JWKS_SOURCE`, ... see
services.kit.settings; gRPC port 15055, metrics port 19105 by default):

- `NOTIFICATION_DATABASE_URL` (default `postgresql://postgres:cinema-dev@127.0.0.1:15432/notification`):
  the delivery log, this service's own database.
- `NOTIFICATION_DB_POOL_MIN` / `NOTIFICATION_DB_POOL_MAX` (default 2 / 10).
- `NOTIFICATION_NATS_URL` (default `nats://127.0.0.1:14222`).
- `NOTIFICATION_DELIVER_ALL` (default true): a new durable consumer starts at the beginning of
  the streams (false: only events published after it was created).
- `NOTIFICATION_SMTP_HOST` / `NOTIFICATION_SMTP_PORT` (default `127.0.0.1` / `12525`, the
  `scripts/smtp_sink.py` of `make up`), `NOTIFICATION_SMTP_TIMEOUT_S` (default 10),
  `NOTIFICATION_SMTP_START_TLS` (default false), `NOTIFICATION_SMTP_USERNAME` / `_PASSWORD`.
- `NOTIFICATION_MAIL_FROM` (default `Cinema <no-reply@cinema.local>`).
- `NOTIFICATION_MESSAGE_ID_DOMAIN` (default `notification.cinema.local`): Message-ID is
  `<event id@this>`.
- `NOTIFICATION_MAX_ATTEMPTS` (default 6), `NOTIFICATION_RETRY_BASE_S` (default 2),
  `NOTIFICATION_RETRY_MAX_S` (default 600): backoff 2, 4, 8 ... s, then PARKED.
- `NOTIFICATION_CLAIM_LEASE_S` (default 60): how long a replica owns a delivery attempt; must
  be well above the SMTP timeout (a lease that runs out mid-handover makes the row "in doubt").
- `NOTIFICATION_IN_DOUBT` (`park` default, or `resend`): see services.notification.domain.model.InDoubtPolicy.
- `NOTIFICATION_DISPATCH_BATCH` (default 16): deliveries claimed and sent concurrently per replica.
- `NOTIFICATION_DISPATCH_IDLE_S` (default 1): poll interval when nothing is due (new events wake
  the loop at once on the replica that recorded them).
- `NOTIFICATION_DISPLAY_TIMEZONE` (default `UTC`): the zone screening times are written in.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings, known_time_zone
from services.notification.domain.model import InDoubtPolicy


class NotificationSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_")

    service_name: str = "notification"
    grpc_port: int = Field(default=15055, ge=0, le=65535)
    metrics_port: int = Field(default=19105, ge=0, le=65535)

    database_url: str = "postgresql://postgres:cinema-dev@127.0.0.1:15432/notification"
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    nats_url: str = "nats://127.0.0.1:14222"
    deliver_all: bool = True

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=12525, ge=1, le=65535)
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    smtp_start_tls: bool = False
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    mail_from: str = "Cinema <no-reply@cinema.local>"
    message_id_domain: str = "notification.cinema.local"

    max_attempts: int = Field(default=6, ge=1)
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    claim_lease_s: float = Field(default=60.0, gt=0)
    in_doubt: InDoubtPolicy = InDoubtPolicy.PARK
    dispatch_batch: int = Field(default=16, ge=1, le=500)
    dispatch_idle_s: float = Field(default=1.0, gt=0)
    display_timezone: str = "UTC"

    _known_zone = field_validator("display_timezone")(known_time_zone)

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> NotificationSettings:
        # An attempt is connect + dialogue + DATA, each bounded by the SMTP timeout.
        if self.claim_lease_s < 3 * self.smtp_timeout_s:
            raise ValueError("claim_lease_s must be at least 3 x smtp_timeout_s")
        return self
