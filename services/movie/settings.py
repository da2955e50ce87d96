"""Settings of the movie service, read once at start-up from `MOVIE_*` variables.

Besides the kit's variables (`MOVIE_GRPC_PORT`, `MOVIE_JWKS_SOURCE`, ... see
services.kit.settings), the service reads:

- `MOVIE_MONGO_URL` (default `mongodb://127.0.0.1:17017/`): MongoDB, or FerretDB locally.
- `MOVIE_MONGO_DATABASE` (default `movie`): its database.
- `MOVIE_MONGO_MAX_POOL_SIZE` (default 1): connections to the store. FerretDB v1 applies an
  update as read-modify-write with no isolation between connections: two concurrent updates of
  one document from two connections lose one (seen: 200 concurrent `$inc` counted 16), which
  would break every conditional update here and the outbox relay's clearing. One connection
  serializes this process's operations, which makes them atomic again. Raise it only on a real
  MongoDB; and on FerretDB v1 run one replica of the service.
- `MOVIE_NATS_URL` (default `nats://127.0.0.1:14222`): NATS JetStream (events in and out).
- `MOVIE_CLEANING_GAP_MINUTES` (default 15): how long a hall stays closed after a screening
  ends; two screenings of one hall must be at least this far apart.
- `MOVIE_CLAIM_TIMEOUT_S` (default 30): a hall booking that its screening has not confirmed
  after this long (the request died) stops counting and is dropped by the next writer.
- `MOVIE_TIME_ZONE` (default `UTC`): the cinema's IANA time zone, for "showing on a date".
- `MOVIE_SWEEP_INTERVAL_S` (default 30): how often unfinished movie deletions are completed
  (a read of the notes of unfinished deletions, not of the catalog: see adapters.mongo.SWEEPS).
- `MOVIE_RELAY_POLL_S` (default 30): the outbox relay's safety poll. Writes wake the relay at
  once; the poll only picks up what another process left behind, and reads the outbox's marks
  (O(pending events)), never the collections (see services.kit.events.doc_outbox).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings, known_time_zone


class MovieSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="MOVIE_", extra="ignore", frozen=True)

    service_name: str = "movie"
    grpc_port: int = Field(default=15053, ge=0, le=65535)
    metrics_port: int = Field(default=19103, ge=0, le=65535)

    mongo_url: str = "mongodb://127.0.0.1:17017/"
    mongo_database: str = "movie"
    mongo_max_pool_size: int = Field(default=1, ge=1)
    nats_url: str = "nats://127.0.0.1:14222"

    cleaning_gap_minutes: int = Field(default=15, ge=0, le=24 * 60)
    claim_timeout_s: float = Field(default=30.0, gt=0)
    time_zone: str = "UTC"
    sweep_interval_s: float = Field(default=30.0, gt=0)
    relay_poll_s: float = Field(default=30.0, gt=0)

    _known_zone = field_validator("time_zone")(known_time_zone)

    @property
    def cleaning_gap(self) -> timedelta:
        return timedelta(minutes=self.cleaning_gap_minutes)

    @property
    def claim_timeout(self) -> timedelta:
        return timedelta(seconds=self.claim_timeout_s)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
