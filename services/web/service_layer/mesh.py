"""The mesh as a manager sees it: a service graph with traffic, health and the event flow, built
from what the system already measures (Kiali's view without Istio's telemetry).

Inputs, read by `MeshSampler` through the `MeshSources` port every few seconds:
- Envoy's statistics (one Envoy runs the ingress and one egress listener per service): per
  cluster requests, 5xx (Envoy maps a gRPC status to its HTTP code: UNAVAILABLE is a 503) and
  requests refused for want of a healthy instance,
  retries, breaker overflows, outlier ejections, healthy/total hosts and the p99 of the last
  flush interval; per listener the requests it took (ingress, egress_<service>);
- each service's Prometheus exposition: its gRPC RED metrics, consumers, outbox and start time;
- NATS' JetStream monitoring (`/jsz`): streams and durable consumers with pending/ack-pending.

Counters become rates between two consecutive samples; nothing here does I/O. Health follows
Kiali's default traffic thresholds: an error ratio of 0.1 % or more is degraded, 10 % or more is
failure; no healthy instance, or a service whose metrics do not answer, is failure too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Kiali's default rate tolerance (5xx for HTTP, gRPC codes 1-16): degraded from 0.1 %, failure from 10 %.
DEGRADED_RATIO = 0.001
FAILURE_RATIO = 0.10
HEALTHY, DEGRADED, FAILURE, IDLE, UNKNOWN = "healthy", "degraded", "failure", "idle", "unknown"

# gRPC codes that are the system's fault (the same list as the chart's SLO): a taken seat or a
# declined card is the caller's outcome, not an error of the mesh.
SYSTEM_FAULT_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)

# The stores each component keeps its state in (from the deployment: scripts/stack, the chart).
STORES: Mapping[str, tuple[str, ...]] = {
    "identity": ("postgres",),
    "reservation": ("postgres",),
    "payment": ("postgres",),
    "notification": ("postgres",),
    "movie": ("mongo",),
    "review": ("mongo",),
    "viewpage": ("redis",),
    "web": ("redis",),
}
# Who calls a service through its egress listener: the gateway for every one, except payment,
# which only reservation calls (the mesh's retries, timeout and breaker of that call).
EGRESS_CALLER: Mapping[str, str] = {"payment": "reservation"}
CLIENT, INGRESS, NATS = "client", "ingress", "nats"
# Envoy's own clusters that are no hop of a request: identity's keys (JWT) and the trace exporter
INFRASTRUCTURE_CLUSTERS = frozenset({"jwks", "otlp"})


def health_of(error_ratio: float | None, requests_per_s: float) -> str:
    """Kiali's traffic health of an edge or a node (IDLE when nothing flowed)."""
    if error_ratio is None or requests_per_s <= 0:
        return IDLE
    if error_ratio >= FAILURE_RATIO:
        return FAILURE
    if error_ratio >= DEGRADED_RATIO:
        return DEGRADED
    return HEALTHY


def worst(*states: str) -> str:
    order = (FAILURE, DEGRADED, HEALTHY, IDLE, UNKNOWN)
    present = [s for s in states if s in order]
    return min(present, key=order.index) if present else UNKNOWN


def quantile_from_buckets(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts (upper bound -> count)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound  # above the highest finite bucket: its bound, as Prometheus does
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return None


# --- what the sources hand over ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One labelled value of a Prometheus exposition."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass
class ServiceScrape:
    """A service's exposition as read now, or None values when it did not answer."""

    samples: list[Sample] | None
    error: str = ""


@dataclass
class EnvoyStats:
    counters: dict[str, float]  # counters and gauges by full name
    p99_ms: dict[str, float]  # histogram name -> p99 of the last flush interval (or since start)


@dataclass
class RawSample:
    """Everything one round read; any part may be missing (its source did not answer)."""

    at: float
    envoy: EnvoyStats | None
    services: dict[str, ServiceScrape]
    jetstream: dict[str, Any] | None
    nats_healthy: bool | None
    errors: dict[str, str] = field(default_factory=dict)


class MeshSources(Protocol):
    async def envoy_stats(self) -> EnvoyStats: ...

    async def service_metrics(self, name: str) -> list[Sample]: ...

    async def jetstream(self) -> dict[str, Any]: ...

    async def nats_healthy(self) -> bool: ...

    @property
    def services(self) -> tuple[str, ...]: ...


# --- what the page gets ----------------------------------------------------------------------------


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # "http", "grpc", "event", "store"
    rps: float | None = None
    error_ratio: float | None = None
    p99_ms: float | None = None
    retries_per_s: float | None = None
    ejections: float | None = None  # ejected by outlier detection (total since Envoy started)
    ejected_now: float | None = None
    breaker_trips: float | None = None  # requests refused by the breaker (total)
    health: str = IDLE
    note: str = ""


@dataclass
class Node:
    name: str
    kind: str  # "edge", "service", "store", "broker"
    health: str = UNKNOWN
    rps: float | None = None
    error_ratio: float | None = None
    p99_ms: float | None = None
    instances: int | None = None
    healthy_instances: int | None = None
    restarts: int = 0
    note: str = ""


@dataclass
class ConsumerState:
    stream: str
    name: str
    service: str
    pending: int
    ack_pending: int
    redelivered: int
    handled_per_s: float | None
    dead_lettered: float | None


@dataclass
class StreamState:
    name: str
    messages: int
    bytes: int
    consumers: int


@dataclass
class OutboxState:
    service: str
    outbox: str
    backlog: float
    oldest_age_s: float
    published_per_s: float | None


@dataclass
class MeshView:
    at: float
    interval_s: float
    nodes: list[Node]
    edges: list[Edge]
    streams: list[StreamState]
    consumers: list[ConsumerState]
    outboxes: list[OutboxState]
    dead_letters: int | None
    errors: dict[str, str]
    cost: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- from two samples to a view ---------------------------------------------------------------------


def _sum(samples: Iterable[Sample], name: str, **match: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items()))


def _buckets(samples: Iterable[Sample], name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for s in samples:
        if s.name == name and "le" in s.labels:
            bound = float(s.labels["le"])
            out[bound] = out.get(bound, 0.0) + s.value
    return out


class _Delta:
    """Rates of counters between the previous sample and this one."""

    def __init__(self, now: RawSample, before: RawSample | None) -> None:
        self.now, self.before = now, before
        self.dt = (now.at - before.at) if before else 0.0

    def envoy(self, name: str) -> float | None:
        if not (self.before and self.before.envoy and self.now.envoy and self.dt > 0):
            return None
        if name not in self.now.envoy.counters:
            return None
        return max(0.0, self.now.envoy.counters[name] - self.before.envoy.counters.get(name, 0.0)) / self.dt

    def service(self, service: str, name: str, **match: str) -> float | None:
        now, before = self.now.services.get(service), self.before.services.get(service) if self.before else None
        if not (now and before and now.samples is not None and before.samples is not None and self.dt > 0):
            return None
        return max(0.0, _sum(now.samples, name, **match) - _sum(before.samples, name, **match)) / self.dt

    def service_errors(self, service: str) -> tuple[float | None, float | None]:
        """(requests/s, system-fault error ratio) of a service's gRPC server."""
        now, before = self.now.services.get(service), self.before.services.get(service) if self.before else None
        if not (now and before and now.samples is not None and before.samples is not None and self.dt > 0):
            return None, None

        def count(samples: list[Sample], errors_only: bool) -> float:
            return sum(
                s.value
                for s in samples
                if s.name == "grpc_server_handled_total"
                and not s.labels.get("grpc_service", "").startswith("grpc.health")
                and (not errors_only or s.labels.get("grpc_code") in SYSTEM_FAULT_CODES)
            )

        total = max(0.0, count(now.samples, False) - count(before.samples, False))
        errors = max(0.0, count(now.samples, True) - count(before.samples, True))
        return total / self.dt, (errors / total if total else None)

    def service_p99_ms(self, service: str) -> float | None:
        now, before = self.now.services.get(service), self.before.services.get(service) if self.before else None
        if not (now and before and now.samples is not None and before.samples is not None):
            return None
        name = "grpc_server_handling_seconds_bucket"
        b_now, b_before = _buckets(now.samples, name), _buckets(before.samples, name)
        delta = {bound: max(0.0, count - b_before.get(bound, 0.0)) for bound, count in b_now.items()}
        p99 = quantile_from_buckets(0.99, delta)
        return None if p99 is None else p99 * 1000


class RestartCounter:
    """Counts restarts of each service: its process start time changed between two samples."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self.restarts: dict[str, int] = {}

    def observe(self, service: str, samples: list[Sample] | None) -> int:
        if samples is not None:
            started = _sum(samples, "process_start_time_seconds")
            if started:
                known = self._started.get(service)
                if known is not None and abs(started - known) > 0.5:
                    self.restarts[service] = self.restarts.get(service, 0) + 1
                self._started[service] = started
        return self.restarts.get(service, 0)


def build_view(now: RawSample, before: RawSample | None, restarts: RestartCounter, cost: dict[str, float]) -> MeshView:
    d = _Delta(now, before)
    envoy = now.envoy
    counters = envoy.counters if envoy else {}
    p99s = envoy.p99_ms if envoy else {}
    clusters = sorted({name.split(".")[1] for name in counters if name.startswith("cluster.")})
    services = list(now.services)

    nodes: dict[str, Node] = {}
    edges: list[Edge] = []

    # the ingress: what arrived from outside
    ingress_rps = d.envoy("http.ingress.downstream_rq_total")
    ingress_5xx = d.envoy("http.ingress.downstream_rq_5xx")
    ingress_ratio = (ingress_5xx or 0.0) / ingress_rps if ingress_rps else None
    nodes[CLIENT] = Node(CLIENT, "edge", health=HEALTHY, note="browsers, the cinema command, REST clients")
    nodes[INGRESS] = Node(
        INGRESS,
        "edge",
        health=FAILURE if envoy is None else worst(health_of(ingress_ratio, ingress_rps or 0.0), HEALTHY),
        rps=ingress_rps,
        error_ratio=ingress_ratio,
        p99_ms=p99s.get("http.ingress.downstream_rq_time"),
        instances=1,
        healthy_instances=0 if envoy is None else 1,
        note="Envoy: JWT, rate limit, routes" if envoy else "Envoy's admin endpoint does not answer",
    )
    edges.append(
        Edge(
            CLIENT,
            INGRESS,
            "http",
            rps=ingress_rps,
            error_ratio=ingress_ratio,
            p99_ms=p99s.get("http.ingress.downstream_rq_time"),
            health=health_of(ingress_ratio, ingress_rps or 0.0),
        )
    )

    for cluster in clusters:
        c = f"cluster.{cluster}."
        # a request Envoy could not send (no healthy instance left) is a failure of the edge too
        none_healthy = d.envoy(c + "upstream_cx_none_healthy") or 0.0
        sent = d.envoy(c + "upstream_rq_total")
        total = None if sent is None else sent + none_healthy
        errors = None if sent is None else (d.envoy(c + "upstream_rq_5xx") or 0.0) + none_healthy
        ratio = (errors or 0.0) / total if total else None
        hosts = int(counters.get(c + "membership_total", 0))
        healthy = int(counters.get(c + "membership_healthy", 0))
        egress = d.envoy(f"http.egress_{cluster}.downstream_rq_total")
        if cluster in INFRASTRUCTURE_CLUSTERS or c + "membership_healthy" not in counters:
            continue
        edge_health = health_of(ratio, total or 0.0)
        common: dict[str, Any] = {
            "error_ratio": ratio,
            "p99_ms": p99s.get(c + "upstream_rq_time"),
            "retries_per_s": d.envoy(c + "upstream_rq_retry"),
            "ejections": counters.get(c + "outlier_detection.ejections_enforced_total"),
            "ejected_now": counters.get(c + "outlier_detection.ejections_active"),
            "breaker_trips": counters.get(c + "upstream_rq_pending_overflow", 0.0)
            + counters.get(c + "upstream_rq_retry_overflow", 0.0)
            + counters.get(c + "upstream_cx_overflow", 0.0),
            "health": edge_health,
        }
        kind = "grpc" if cluster in services else "http"
        if f"http.egress_{cluster}.downstream_rq_total" in counters:
            caller = EGRESS_CALLER.get(cluster, "gateway")
            edges.append(Edge(caller, cluster, "grpc", rps=egress, **common))
            from_ingress = None if total is None else max(0.0, total - (egress or 0.0))
            if from_ingress:
                edges.append(Edge(INGRESS, cluster, "grpc", rps=from_ingress, note="gRPC from the ingress", **common))
        else:
            edges.append(Edge(INGRESS, cluster, kind, rps=total, **common))
        node = nodes.setdefault(cluster, Node(cluster, "service"))
        node.instances, node.healthy_instances = hosts, healthy
        node.health = FAILURE if hosts and not healthy else worst(edge_health, HEALTHY if healthy else UNKNOWN)
        if node.rps is None:
            node.rps, node.error_ratio, node.p99_ms = total, ratio, common["p99_ms"]

    # each service's own view of its traffic (its server metrics), restarts and stores
    for service, scrape in now.services.items():
        node = nodes.setdefault(service, Node(service, "service"))
        node.restarts = restarts.observe(service, scrape.samples)
        if scrape.samples is None:
            node.health = FAILURE
            node.note = f"metrics do not answer: {scrape.error}"
            continue
        rps, ratio = d.service_errors(service)
        if rps is not None:
            node.rps, node.error_ratio, node.p99_ms = rps, ratio, d.service_p99_ms(service)
            node.health = worst(node.health, health_of(ratio, rps), HEALTHY)
        elif node.health == UNKNOWN:
            node.health = HEALTHY
    for component, stores in STORES.items():
        if component in nodes:
            for store in stores:
                nodes.setdefault(store, Node(store, "store", note="no telemetry of its own here"))
                edges.append(Edge(component, store, "store"))

    # events: outboxes publish to NATS, consumers take from it
    streams, consumers, dead_letters = _jetstream(now.jetstream)
    nodes[NATS] = Node(
        NATS,
        "broker",
        health=UNKNOWN if now.nats_healthy is None else (HEALTHY if now.nats_healthy else FAILURE),
        note=f"JetStream: {len(streams)} streams, {len(consumers)} durable consumers",
    )
    outboxes: list[OutboxState] = []
    durable_owner: dict[str, str] = {}
    for service, scrape in now.services.items():
        for s in scrape.samples or []:
            if s.name == "cinema_outbox_backlog":
                outbox = s.labels.get("outbox", "")
                published = d.service(service, "cinema_outbox_published_total", outbox=outbox)
                outboxes.append(
                    OutboxState(
                        service,
                        outbox,
                        s.value,
                        _sum(scrape.samples or [], "cinema_outbox_oldest_age_seconds", outbox=outbox),
                        published,
                    )
                )
            elif s.name == "cinema_events_consumed_total":
                durable_owner.setdefault(s.labels.get("consumer", ""), service)
    for service in sorted({o.service for o in outboxes}):
        rate = sum(o.published_per_s or 0.0 for o in outboxes if o.service == service)
        edges.append(Edge(service, NATS, "event", rps=rate if before else None, health=HEALTHY, note="outbox relay"))
    for consumer in consumers:
        # the service that counted it; before its first event, the one it is named after
        consumer.service = durable_owner.get(consumer.name, consumer.name if consumer.name in now.services else "")
        samples = now.services[consumer.service].samples if consumer.service else None
        if samples is not None:
            consumer.handled_per_s = d.service(consumer.service, "cinema_events_consumed_total", consumer=consumer.name)
            consumer.dead_lettered = _sum(samples, "cinema_events_dead_lettered_total", consumer=consumer.name)
    for service in sorted({c.service for c in consumers if c.service}):
        mine = [c for c in consumers if c.service == service]
        handled = [c.handled_per_s for c in mine if c.handled_per_s is not None]
        failed = sum(
            d.service(service, "cinema_events_consumed_total", consumer=c.name, outcome=outcome) or 0.0
            for c in mine
            for outcome in ("retried", "dead_lettered", "poison")
        )
        consumed: float | None = sum(handled) if handled else None
        ratio = failed / consumed if consumed else None
        lagging = sum(c.pending + c.ack_pending for c in mine)
        edges.append(
            Edge(
                NATS,
                service,
                "event",
                rps=consumed,
                error_ratio=ratio,
                health=health_of(ratio, consumed or 0.0),
                note=f"{lagging} waiting for {', '.join(c.name for c in mine)}",
            )
        )

    return MeshView(
        at=now.at,
        interval_s=d.dt,
        nodes=list(nodes.values()),
        edges=edges,
        streams=streams,
        consumers=consumers,
        outboxes=outboxes,
        dead_letters=dead_letters,
        errors=dict(now.errors),
        cost=cost,
    )


def _jetstream(jsz: dict[str, Any] | None) -> tuple[list[StreamState], list[ConsumerState], int | None]:
    if not jsz:
        return [], [], None
    streams: list[StreamState] = []
    consumers: list[ConsumerState] = []
    dead_letters: int | None = None
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            state = stream.get("state") or {}
            name = str(stream.get("name", ""))
            streams.append(
                StreamState(
                    name, int(state.get("messages", 0)), int(state.get("bytes", 0)), int(state.get("consumer_count", 0))
                )
            )
            if name.endswith("DEAD_LETTER"):
                dead_letters = int(state.get("messages", 0))
            for consumer in stream.get("consumer_detail") or []:
                consumers.append(
                    ConsumerState(
                        stream=name,
                        name=str(consumer.get("name", "")),
                        service="",
                        pending=int(consumer.get("num_pending", 0)),
                        ack_pending=int(consumer.get("num_ack_pending", 0)),
                        redelivered=int(consumer.get("num_redelivered", 0)),
                        handled_per_s=None,
                        dead_lettered=None,
                    )
                )
    return streams, consumers, dead_letters


# --- the one sampler --------------------------------------------------------------------------------


class MeshSampler:
    """Samples the mesh every `interval_s` while someone watches (a page asked within `idle_after_s`),
    and keeps the latest view for every page: one sampling for all browsers, none when nobody looks."""

    def __init__(self, sources: MeshSources, interval_s: float, idle_after_s: float = 30.0) -> None:
        self._sources = sources
        self._interval_s = interval_s
        self._idle_after_s = idle_after_s
        self._restarts = RestartCounter()
        self._previous: RawSample | None = None
        self._view: MeshView | None = None
        self._watched_at = 0.0
        self._wake = asyncio.Event()
        self._fresh = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self._cpu_s = 0.0
        self._wall_s = 0.0
        self._started = time.monotonic()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="web-mesh-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def latest(self, wait_s: float = 5.0) -> MeshView | None:
        """The newest view; the first call after a quiet spell wakes the sampler and waits for a round."""
        self._watched_at = time.monotonic()
        if self._view is None or time.monotonic() - self._view.at > 2 * self._interval_s + 1:
            self._fresh.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fresh.wait(), wait_s)
        return self._view

    async def _run(self) -> None:
        while True:
            if time.monotonic() - self._watched_at > self._idle_after_s:
                self._previous = None  # rates over a quiet spell would mislead
                self._wake.clear()
                await self._wake.wait()
            t0, c0 = time.monotonic(), time.process_time()
            try:
                await self.sample_once()
            except Exception:  # a round that fails must not end the sampler
                log.exception("mesh sampling round failed")
            self._wall_s += time.monotonic() - t0
            self._cpu_s += time.process_time() - c0
            await asyncio.sleep(self._interval_s)

    async def sample_once(self) -> MeshView:
        c0 = time.process_time()
        raw = await self._read()
        self.rounds += 1
        running_s = max(time.monotonic() - self._started, 1e-9)
        cost = {
            "interval_s": self._interval_s,
            "rounds": float(self.rounds),
            "sources_read": float(len(self._sources.services) + 3),
            "round_ms": (time.monotonic() - raw.at) * 1000,
            # process CPU of the sampling (this round, and on average since start): the web
            # process's share goes up by this while a mesh page is open, and not otherwise
            "cpu_ms_per_round": (self._cpu_s / max(self.rounds - 1, 1)) * 1000 if self.rounds > 1 else 0.0,
            "cpu_share": self._cpu_s / running_s,
        }
        view = build_view(raw, self._previous, self._restarts, cost)
        view.cost["cpu_ms_this_round"] = (time.process_time() - c0) * 1000
        self._previous = raw
        self._view = view
        self._fresh.set()
        return view

    async def _read(self) -> RawSample:
        at = time.monotonic()
        errors: dict[str, str] = {}
        names = self._sources.services

        async def guarded(label: str, read: Any) -> Any:
            try:
                return await read
            except Exception as error:  # a source that fails is shown on the page, not raised
                errors[label] = f"{type(error).__name__}: {error}"[:200]
                return None

        results = await asyncio.gather(
            guarded("envoy", self._sources.envoy_stats()),
            guarded("jetstream", self._sources.jetstream()),
            guarded("nats", self._sources.nats_healthy()),
            *(guarded(name, self._sources.service_metrics(name)) for name in names),
        )
        envoy, jetstream, nats_ok = results[0], results[1], results[2]
        services = {
            name: ServiceScrape(samples, errors.get(name, "")) for name, samples in zip(names, results[3:], strict=True)
        }
        return RawSample(at, envoy, services, jetstream, nats_ok, errors)
