"""Where the mesh page's numbers come from, over HTTP on the loopback (or the cluster network):
Envoy's admin `/stats`, each service's `/metrics`, NATS' monitoring (`/jsz`, `/healthz`) and
Jaeger's query API (`/api/traces`, the one its UI uses; scripts/observability/jaeger.py reads
the same). Thin: fetch and parse, nothing else; every call has a short timeout so one stuck
source (a SIGSTOPped service) costs a round at most that long.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from services.web.service_layer.mesh import EnvoyStats, Sample

# Only what the graph shows: Envoy has thousands of statistics, this keeps a round small.
ENVOY_FILTER = (
    r"^(cluster\.[a-z_]+\.(upstream_rq_total|upstream_rq_5xx|upstream_rq_retry|upstream_rq_retry_overflow"
    r"|upstream_rq_pending_overflow|upstream_cx_overflow|upstream_cx_none_healthy|upstream_rq_timeout"
    r"|membership_healthy|membership_total"
    r"|outlier_detection\.ejections_enforced_total|outlier_detection\.ejections_active|upstream_rq_time)"
    r"|http\.(ingress|egress_[a-z_]+)\.downstream_rq_(total|5xx|time))$"
)
# The samples the graph reads from a service; the rest of its exposition is skipped unparsed (the
# prometheus_client parser took ~10 ms a service a round for lines that are thrown away).
SERVICE_SAMPLES = frozenset(
    {
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "process_start_time_seconds",
        "cinema_events_consumed_total",
        "cinema_events_dead_lettered_total",
        "cinema_outbox_backlog",
        "cinema_outbox_oldest_age_seconds",
        "cinema_outbox_published_total",
    }
)
# Gauges of a whole store or of the newest process: the instances of a service are combined by their
# maximum; everything else (counters, histogram buckets) is added up.
_MAX_OF_INSTANCES = frozenset(
    {"process_start_time_seconds", "cinema_outbox_backlog", "cinema_outbox_oldest_age_seconds"}
)
_PREFIXES = tuple(sorted({name.split("_", 2)[0] + "_" + name.split("_", 2)[1] for name in SERVICE_SAMPLES}))
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def parse_envoy_stats(document: Mapping[str, Any]) -> EnvoyStats:
    """Envoy's `/stats?format=json`: plain stats, and the p99 of each histogram (the last flush
    interval's when there was traffic in it, else the cumulative one)."""
    counters: dict[str, float] = {}
    p99: dict[str, float] = {}
    for item in document.get("stats") or []:
        if "name" in item and isinstance(item.get("value"), int | float):
            counters[str(item["name"])] = float(item["value"])
        histograms = item.get("histograms")
        if isinstance(histograms, dict):
            quantiles = [float(q) for q in histograms.get("supported_quantiles") or []]
            if 99.0 not in quantiles:
                continue
            index = quantiles.index(99.0)
            for computed in histograms.get("computed_quantiles") or []:
                values = computed.get("values") or []
                if index < len(values):
                    # a quantile of no samples comes as null (or NaN): the interval's, else since start
                    for key in ("interval", "cumulative"):
                        chosen = _number(values[index].get(key))
                        if chosen is not None:
                            p99[str(computed.get("name"))] = chosen
                            break
    return EnvoyStats(counters, p99)


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_exposition(text: str) -> list[Sample]:
    """The samples of SERVICE_SAMPLES in a Prometheus text exposition (`name{labels} value`)."""
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line.startswith(_PREFIXES):
            continue
        brace, space = line.find("{"), line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name, close = line[:brace], line.rfind("}")
            labels = {k: _unescape(v) for k, v in _LABEL.findall(line[brace + 1 : close])}
            fields = line[close + 1 :].split()
        else:
            name, labels, fields = line[:space], {}, line[space + 1 :].split()
        if name in SERVICE_SAMPLES and fields:
            try:
                samples.append(Sample(name, labels, float(fields[0])))
            except ValueError:
                continue
    return samples


def combine_instances(scrapes: Sequence[Sequence[Sample]]) -> list[Sample]:
    """One service's samples from the expositions of its instances (one scrape per instance)."""
    combined: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    for samples in scrapes:
        for sample in samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            seen = combined.get(key)
            if seen is None:
                combined[key] = sample
            elif sample.name in _MAX_OF_INSTANCES:
                combined[key] = Sample(sample.name, sample.labels, max(seen.value, sample.value))
            else:
                combined[key] = Sample(sample.name, sample.labels, seen.value + sample.value)
    return list(combined.values())


class HttpMeshSources:
    """The sources of one deployment, by their addresses (services.web.settings)."""

    def __init__(
        self,
        envoy_admin_url: str,
        nats_monitor_url: str,
        service_metrics: Mapping[str, Sequence[str]],
        timeout_s: float = 1.5,
    ) -> None:
        self._envoy = envoy_admin_url.rstrip("/")
        self._nats = nats_monitor_url.rstrip("/")
        self._metrics = {name: list(urls) for name, urls in service_metrics.items()}
        self._client = httpx.AsyncClient(timeout=timeout_s)

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self._metrics)

    async def envoy_stats(self) -> EnvoyStats:
        reply = await self._client.get(f"{self._envoy}/stats", params={"format": "json", "filter": ENVOY_FILTER})
        reply.raise_for_status()
        return parse_envoy_stats(reply.json())

    async def service_metrics(self, name: str) -> list[Sample]:
        """The service's samples, its instances added up; an instance that does not answer (a
        restart) is left out, and only a service none of whose instances answers is an error."""
        replies = await asyncio.gather(*(self._client.get(url) for url in self._metrics[name]), return_exceptions=True)
        scrapes: list[list[Sample]] = []
        failure: BaseException | None = None
        for reply in replies:
            if isinstance(reply, BaseException):
                failure = reply
            elif reply.is_error:
                failure = httpx.HTTPStatusError(
                    f"{reply.status_code} from {reply.url}", request=reply.request, response=reply
                )
            else:
                scrapes.append(parse_exposition(reply.text))
        if not scrapes and failure is not None:
            raise failure
        return combine_instances(scrapes)

    async def jetstream(self) -> dict[str, Any]:
        reply = await self._client.get(f"{self._nats}/jsz", params={"streams": "true", "consumers": "true"})
        reply.raise_for_status()
        document: dict[str, Any] = reply.json()
        return document

    async def nats_healthy(self) -> bool:
        reply = await self._client.get(f"{self._nats}/healthz", params={"js-enabled-only": "true"})
        return reply.status_code == 200

    async def close(self) -> None:
        await self._client.aclose()


class JaegerTraces:
    """Traces from Jaeger's query API, reduced to what a waterfall needs."""

    def __init__(self, query_url: str, timeout_s: float = 3.0) -> None:
        self._base = query_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        reply = await self._client.get(f"{self._base}{path}", params=params)
        if reply.status_code == 404:
            return []
        reply.raise_for_status()
        return list(reply.json().get("data") or [])

    async def of_reservation(self, reservation_id: str) -> list[dict[str, Any]]:
        """The traces whose spans carry `cinema.reservation_id` = the id (as scripts.observability.trace)."""
        params = {
            "service": "reservation",
            "tags": json.dumps({"cinema.reservation_id": reservation_id}),
            "lookback": "6h",
            "limit": "5",
        }
        return await self._get("/api/traces", params)

    async def recent_reservations(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest traces of the reservation service that name a reservation."""
        params = {"service": "reservation", "lookback": "1h", "limit": str(limit * 3)}
        return await self._get("/api/traces", params)

    async def close(self) -> None:
        await self._client.aclose()
