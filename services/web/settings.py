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
"""

from __future__ import annotations

from pydantic import Field
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
