"""Settings of the web service, read once from the environment (prefix `WEB_`).

From the kit (services.kit.settings) it uses `WEB_SERVICE_NAME`, `WEB_LOG_LEVEL`, `WEB_DRAIN_S`
and `WEB_SHUTDOWN_GRACE_S`; the gRPC and JWT variables of the kit do not apply (the page is
public; the API calls it makes carry the user's token to the ingress, which checks it).

- `WEB_HTTP_HOST` (default `127.0.0.1`), `WEB_HTTP_PORT` (default `18082`; `0` = any free port):
  the page, its live updates, `/healthz` and `/metrics`.
- `WEB_REDIS_URL` (default `redis://127.0.0.1:16379/0`): the viewpage's Redis, whose change channel
  we subscribe to; `WEB_CHANGES_CHANNEL` (default `viewpage:changes`, i.e. `<VIEWPAGE_KEY_PREFIX>:changes`).
- `WEB_STREAM_MAX_S` (default 25): a live-update stream ends after this long and the browser
  reconnects at once (EventSource), so no proxy timeout cuts it mid-way (the mesh's route timeout
  of the web service is above it) and a page refetches what it may have missed.
- `WEB_HEARTBEAT_S` (default 10): a comment line on an idle stream keeps idle timeouts away.
- `WEB_MAX_STREAMS` (default 1000): open streams at most; more get 503 and retry later.
- `WEB_STREAM_QUEUE` (default 64): changes buffered per stream; a page that falls behind is told
  to refetch everything instead of receiving an unbounded backlog.

The mesh page (`/mesh`, managers; services.web.service_layer.mesh) samples, from this process only:
- `WEB_MESH_ENVOY_ADMIN_URL` (default `http://127.0.0.1:19901`): Envoy's admin (`/stats`);
- `WEB_MESH_NATS_MONITOR_URL` (default `http://127.0.0.1:18222`): NATS monitoring (`/jsz`, `/healthz`);
- `WEB_MESH_JAEGER_URL` (default `http://127.0.0.1:16686`): Jaeger's query API (traces);
- `WEB_MESH_SERVICE_METRICS` (default `make up`'s metrics ports): `name=url` pairs, comma-separated,
  of each service's `/metrics`; a name given once per instance (`reservation=...,reservation=...`)
  is one service whose instances are added up;
- `WEB_MESH_SAMPLE_S` (default 3): one sampling round this often while a mesh page is open;
  `WEB_MESH_IDLE_AFTER_S` (default 30): no page asked for this long, and sampling stops.
The data endpoints demand a manager's token, verified with the kit's `WEB_JWKS_SOURCE`,
`WEB_JWT_ISSUER`, `WEB_JWT_AUDIENCE` (no JWKS = every token refused).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings


class WebSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="WEB_", extra="ignore", frozen=True)

    service_name: str = "web"
    metrics_enabled: bool = True  # served on the HTTP port at /metrics

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=18082, ge=0, le=65535)

    redis_url: str = "redis://127.0.0.1:16379/0"
    changes_channel: str = Field(default="viewpage:changes", min_length=1)

    stream_max_s: float = Field(default=25.0, gt=0)
    heartbeat_s: float = Field(default=10.0, gt=0)
    max_streams: int = Field(default=1000, ge=1)
    stream_queue: int = Field(default=64, ge=1)

    mesh_envoy_admin_url: str = "http://127.0.0.1:19901"
    mesh_nats_monitor_url: str = "http://127.0.0.1:18222"
    mesh_jaeger_url: str = "http://127.0.0.1:16686"
    # make up's two instances of each service (movie: one on FerretDB)
    mesh_service_metrics: str = ",".join(
        f"{name}=http://127.0.0.1:{port + extra}/metrics"
        for name, port in (
            ("reservation", 19101),
            ("payment", 19102),
            ("movie", 19103),
            ("review", 19104),
            ("notification", 19105),
            ("viewpage", 19106),
        )
        for extra in ((0,) if name == "movie" else (0, 100))
    )
    mesh_sample_s: float = Field(default=3.0, ge=0.5, le=60)
    mesh_idle_after_s: float = Field(default=30.0, gt=0)

    @field_validator("mesh_service_metrics")
    @classmethod
    def _metrics_pairs(cls, value: str) -> str:
        for pair in filter(None, (p.strip() for p in value.split(","))):
            name, sep, url = pair.partition("=")
            if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"WEB_MESH_SERVICE_METRICS: {pair!r} is not name=http(s)://url")
        return value

    @property
    def mesh_metrics_urls(self) -> dict[str, list[str]]:
        """Service -> the metrics URLs of its instances (a name given more than once has several)."""
        urls: dict[str, list[str]] = {}
        for pair in filter(None, (p.strip() for p in self.mesh_service_metrics.split(","))):
            name, _, url = pair.partition("=")
            urls.setdefault(name.strip(), []).append(url.strip())
        return urls
