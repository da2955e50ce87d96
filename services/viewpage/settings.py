"""Settings of the viewpage service, read once from the environment (prefix `VIEWPAGE_`).

Besides the kit's variables (`VIEWPAGE_GRPC_PORT`, `VIEWPAGE_JWKS_SOURCE`, `VIEWPAGE_LOG_LEVEL` ...,
see services.kit.settings):

- `VIEWPAGE_REDIS_URL` (default `redis://127.0.0.1:16379/0`).
- `VIEWPAGE_KEY_PREFIX` (default `viewpage`): every key of the read model starts with it.
- `VIEWPAGE_NATS_URL` (default `nats://127.0.0.1:14222`).
- `VIEWPAGE_CONSUMER_BATCH` (default 64): messages fetched per pull.
- `VIEWPAGE_REPLAY_BATCH` (default 200): events applied per Redis call during a rebuild.
- `VIEWPAGE_PRUNE_INTERVAL_S` (default 60): how often movies whose screenings have all started are
  taken off the all-days indexes of the board (one Redis call; reads skip them meanwhile).
- `VIEWPAGE_TIME_ZONE` (default `UTC`): the cinema's time zone (IANA name), the zone of the
  board's days (`showing_on`, `days`). The days are computed when events are applied: after a
  change, rebuild the board (`python -m services.viewpage rebuild`).

The gRPC port defaults to 15056 and the metrics port to 19106.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings, known_time_zone


class ViewpageSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="VIEWPAGE_")

    service_name: str = "viewpage"
    grpc_port: int = Field(default=15056, ge=0, le=65535)
    metrics_port: int = Field(default=19106, ge=0, le=65535)

    redis_url: str = "redis://127.0.0.1:16379/0"
    key_prefix: str = Field(default="viewpage", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    nats_url: str = "nats://127.0.0.1:14222"
    consumer_batch: int = Field(default=64, ge=1, le=1000)
    replay_batch: int = Field(default=200, ge=1, le=5000)
    time_zone: str = "UTC"
    prune_interval_s: float = Field(default=60.0, gt=0)

    _known_zone = field_validator("time_zone")(known_time_zone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
