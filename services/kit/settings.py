"""Typed settings every Cinema service reads once at start-up from the environment.

`KitSettings` holds what the kit itself needs (addresses, logging, tracing, JWT, shutdown
timing). A service subclasses it, adds its own fields and sets its own prefix, so every
variable of one service shares that prefix:

    class ReservationSettings(KitSettings):
        model_config = SettingsConfigDict(env_prefix="RESERVATION_")
        database_url: str = "postgresql://127.0.0.1:5432/reservation"

Variables of the base class (shown with the default prefix `CINEMA_`; a subclass replaces it):

- `CINEMA_SERVICE_NAME` (default `cinema`): `service.name` in logs, traces and metrics.
- `CINEMA_SERVICE_VERSION` (default `0.1.0`): reported in the start-up log and traces.
- `CINEMA_GRPC_HOST` (default `127.0.0.1`), `CINEMA_GRPC_PORT` (default `50051`; `0` = any free port).
- `CINEMA_METRICS_ENABLED` (default `true`), `CINEMA_METRICS_HOST` (default `127.0.0.1`),
  `CINEMA_METRICS_PORT` (default `9464`; `0` = any free port): the Prometheus `/metrics` endpoint.
- `CINEMA_LOG_LEVEL` (default `INFO`).
- `CINEMA_OTLP_ENDPOINT` (default empty = no trace export): OTLP/HTTP base URL, e.g.
  `http://127.0.0.1:4318` (`/v1/traces` is appended unless already there).
- `CINEMA_TRACE_SAMPLE_RATIO` (default `1`): the share of traces this service starts that are
  recorded (parent-based: a caller's sampled/not-sampled decision in `traceparent` is followed,
  so a trace is whole or absent). Every recorded request costs CPU in every process it touches;
  `make up` and the chart record a tenth (`CINEMA_TRACE_SAMPLE_RATIO` there too).
- `CINEMA_JWT_ISSUER` (default `cinema-identity`), `CINEMA_JWT_AUDIENCE` (default `cinema`).
- `CINEMA_JWKS_SOURCE` (default empty = no key, every token is rejected): an `http(s)://` URL or
  a file path of a JWKS document.
- `CINEMA_JWT_ALGORITHMS` (default `RS256,ES256,EdDSA`): comma-separated allow-list of asymmetric
  algorithms; `none` and `HS*` are refused at start-up.
- `CINEMA_JWT_LEEWAY_S` (default `10`): clock skew tolerated on `exp`/`nbf`.
- `CINEMA_JWKS_MIN_REFRESH_S` (default `10`): at most one JWKS reload per this many seconds when
  tokens with an unknown `kid` arrive.
- `CINEMA_JWKS_WARM_TIMEOUT_S` (default `3`): how long start-up waits for the JWKS before serving
  anyway (the keys are then loaded by the first request).
- `CINEMA_DRAIN_S` (default `3`): seconds between health NOT_SERVING and stopping the server,
  so the mesh stops routing new requests here.
- `CINEMA_SHUTDOWN_GRACE_S` (default `10`): seconds in-flight RPCs get to finish on stop.
- `CINEMA_MAX_IN_FLIGHT` (default `64`; `0` turns admission control off): the most RPCs this
  process serves at once; past its adaptive limit an RPC waits up to `CINEMA_ADMISSION_QUEUE_MS`
  (default `20`) while overloaded, or `CINEMA_ADMISSION_BURST_QUEUE_MS` (default `500`) in a
  burst (its wait queue emptied within the last 100 ms), and is then refused with UNAVAILABLE
  and a retry hint of `CINEMA_ADMISSION_RETRY_AFTER_MS` (default `250`). The limit shrinks while admitted RPCs take
  longer than `CINEMA_ADMISSION_TARGET_MS` (default `200`) and grows back when they do not
  (services.kit.admission).
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def known_time_zone(value: str) -> str:
    """A settings validator: `value` names an IANA time zone this machine knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


DEFAULT_JWT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")

# Symmetric and unsigned algorithms are refused outright: with a public JWKS, HS* would let
# anyone sign with the public key bytes, and `none` has no signature at all.
_FORBIDDEN_ALGORITHM_PREFIXES = ("NONE", "HS")


class KitSettings(BaseSettings):
    """Settings shared by every service; subclass it with the service's own prefix and fields."""

    model_config = SettingsConfigDict(env_prefix="CINEMA_", extra="ignore", frozen=True)

    service_name: str = "cinema"
    service_version: str = "0.1.0"

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)

    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)

    log_level: str = "INFO"
    otlp_endpoint: str = ""
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    jwt_issuer: str = "cinema-identity"
    jwt_audience: str = "cinema"
    jwks_source: str = ""
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = DEFAULT_JWT_ALGORITHMS
    jwt_leeway_s: int = Field(default=10, ge=0, le=300)
    jwks_min_refresh_s: float = Field(default=10.0, ge=0)
    jwks_warm_timeout_s: float = Field(default=3.0, ge=0)

    drain_s: float = Field(default=3.0, ge=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)

    max_in_flight: int = Field(default=64, ge=0, le=100_000)
    admission_queue_ms: float = Field(default=20.0, ge=0, le=10_000)
    admission_burst_queue_ms: float = Field(default=500.0, ge=0, le=60_000)
    admission_target_ms: float = Field(default=200.0, gt=0, le=60_000)
    admission_retry_after_ms: float = Field(default=250.0, ge=0, le=60_000)

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _only_asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one JWT algorithm must be allowed")
        for alg in value:
            if alg.upper().startswith(_FORBIDDEN_ALGORITHM_PREFIXES):
                raise ValueError(f"JWT algorithm {alg!r} is not allowed (only asymmetric signatures)")
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level
