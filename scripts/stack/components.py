"""What `make up` runs: the components of the local system and how to check each one.

A component is either a process the supervisor owns (a store today; the services plug in
here as they land) or an external server named by an environment variable
(`DATABASE_URL`, `MONGO_URL`, `REDIS_URL`, `NATS_URL`), which is only checked.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from scripts.observability import jaeger
from scripts.stack import stores
from scripts.stack.paths import DATA
from scripts.stack.process import ManagedProcess

# Every CINEMA_*_PORT variable the runtime reads: a scratch stack (tests, benchmarks) sets each
# one to a free port so it never meets a developer's own `make up`.
PORT_VARIABLES: list[str] = []


def _port(var: str, default: int) -> int:
    PORT_VARIABLES.append(var)
    return int(os.environ.get(var, default))


def scratch_env(data_dir: Path) -> dict[str, str]:
    """Environment for a whole second stack: its own data folder and a free port for everything."""
    # every socket stays bound until all ports are drawn: one at a time, the kernel may hand
    # the same free port to two variables (seen: reservation and another component clashed)
    held: list[socket.socket] = []
    try:
        for _ in PORT_VARIABLES:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
        ports = [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()
    return {"CINEMA_DATA_DIR": str(data_dir), **dict(zip(PORT_VARIABLES, map(str, ports), strict=True))}


# Fixed local ports: away from the usual ones so a machine's own servers do not clash, and
# below 32768 so they never collide with the kernel's ephemeral ports (outgoing connections,
# servers the tests start on "any free port").
PG_PORT = _port("CINEMA_PG_PORT", 15432)
MONGO_PORT = _port("CINEMA_MONGO_PORT", 17017)
REDIS_PORT = _port("CINEMA_REDIS_PORT", 16379)
NATS_PORT = _port("CINEMA_NATS_PORT", 14222)
NATS_MONITOR_PORT = _port("CINEMA_NATS_MONITOR_PORT", 18222)
RESERVATION_PORT = _port("CINEMA_RESERVATION_PORT", 15051)
PAYMENT_PORT = _port("CINEMA_PAYMENT_PORT", 15052)
RESERVATION_METRICS_PORT = _port("CINEMA_RESERVATION_METRICS_PORT", 19101)
PAYMENT_METRICS_PORT = _port("CINEMA_PAYMENT_METRICS_PORT", 19102)
MOVIE_PORT = _port("CINEMA_MOVIE_PORT", 15053)
REVIEW_PORT = _port("CINEMA_REVIEW_PORT", 15054)
MOVIE_METRICS_PORT = _port("CINEMA_MOVIE_METRICS_PORT", 19103)
REVIEW_METRICS_PORT = _port("CINEMA_REVIEW_METRICS_PORT", 19104)
NOTIFICATION_PORT = _port("CINEMA_NOTIFICATION_PORT", 15055)
VIEWPAGE_PORT = _port("CINEMA_VIEWPAGE_PORT", 15056)
NOTIFICATION_METRICS_PORT = _port("CINEMA_NOTIFICATION_METRICS_PORT", 19105)
VIEWPAGE_METRICS_PORT = _port("CINEMA_VIEWPAGE_METRICS_PORT", 19106)
SMTP_PORT = _port("CINEMA_SMTP_PORT", 12525)
# The edge: identity (OAuth2), Envoy (the one address a user needs, and the mesh between the
# services: one egress listener per service applies its traffic policy), the REST gateway.
IDENTITY_PORT = _port("CINEMA_IDENTITY_PORT", 18081)
INGRESS_PORT = _port("CINEMA_INGRESS_PORT", 18080)
ENVOY_ADMIN_PORT = _port("CINEMA_ENVOY_ADMIN_PORT", 19901)
GATEWAY_PORT = _port("CINEMA_GATEWAY_PORT", 18090)
GATEWAY_METRICS_PORT = _port("CINEMA_GATEWAY_METRICS_PORT", 19108)
WEB_PORT = _port("CINEMA_WEB_PORT", 18082)
SERVICE_PORTS = {
    "reservation": RESERVATION_PORT,
    "payment": PAYMENT_PORT,
    "movie": MOVIE_PORT,
    "review": REVIEW_PORT,
    "notification": NOTIFICATION_PORT,
    "viewpage": VIEWPAGE_PORT,
}
SERVICE_METRICS_PORTS = {
    "reservation": RESERVATION_METRICS_PORT,
    "payment": PAYMENT_METRICS_PORT,
    "movie": MOVIE_METRICS_PORT,
    "review": REVIEW_METRICS_PORT,
    "notification": NOTIFICATION_METRICS_PORT,
    "viewpage": VIEWPAGE_METRICS_PORT,
}
# Redundancy: every service runs INSTANCES processes (CINEMA_INSTANCES, default 2; per service
# CINEMA_<SERVICE>_INSTANCES), each on its own ports behind Envoy's active health checks and
# outlier detection, so that one instance's death leaves the work to the other. Instance 1 has
# the ports above; instance k (2..MAX_INSTANCES) has CINEMA_<SERVICE>_PORT_<k> and
# CINEMA_<SERVICE>_METRICS_PORT_<k> (defaults: instance 1's plus 100 per instance).
MAX_INSTANCES = 3
DEFAULT_INSTANCES = 2
# The edge's stateless HTTP services run as many instances (identity and web serve /metrics on
# their HTTP port).
EDGE_PORTS = {
    "identity": (IDENTITY_PORT, IDENTITY_PORT),
    "gateway": (GATEWAY_PORT, GATEWAY_METRICS_PORT),
    "web": (WEB_PORT, WEB_PORT),
}


def _instance_ports(name: str, port: int, metrics_port: int, k: int) -> tuple[int, int]:
    grpc_or_http = _port(f"CINEMA_{name.upper()}_PORT_{k}", port + 100 * (k - 1))
    if metrics_port == port:
        return grpc_or_http, grpc_or_http
    return grpc_or_http, _port(f"CINEMA_{name.upper()}_METRICS_PORT_{k}", metrics_port + 100 * (k - 1))


INSTANCE_PORTS: dict[str, list[tuple[int, int]]] = {
    name: [(port, metrics_port)] + [_instance_ports(name, port, metrics_port, k) for k in range(2, MAX_INSTANCES + 1)]
    for name, (port, metrics_port) in {
        **{name: (port, SERVICE_METRICS_PORTS[name]) for name, port in SERVICE_PORTS.items()},
        **EDGE_PORTS,
    }.items()
}
# Jaeger (traces of every service, Envoy and identity; in memory): its ports are read by
# scripts/observability/jaeger.py, listed here so a scratch stack moves them too
PORT_VARIABLES.extend(jaeger.PORT_VARIABLES)
_EGRESS_DEFAULTS = {
    "reservation": 16051,
    "payment": 16052,
    "movie": 16053,
    "review": 16054,
    "notification": 16055,
    "viewpage": 16056,
}
EGRESS_PORTS = {name: _port(f"CINEMA_EGRESS_{name.upper()}_PORT", port) for name, port in _EGRESS_DEFAULTS.items()}

LOGS = DATA / "logs"


@dataclass
class Component:
    name: str
    url: str  # what a client uses (for PostgreSQL: the admin database)
    check: Callable[[], bool]  # a live health probe
    make_process: Callable[[], ManagedProcess] | None = None  # None: external, not ours to run
    after_ready: Callable[[], None] | None = None  # idempotent set-up once it answers
    note: str = ""
    ports: tuple[int, ...] = ()  # what our process listens on (checked free before start)
    depends_on: tuple[str, ...] = ()  # started once these are ready

    @property
    def external(self) -> bool:
        return self.make_process is None


# -- health probes by URL (they work for our own servers and for external ones alike) --


def check_postgres(url: str) -> bool:
    import asyncpg

    async def probe() -> bool:
        conn = await asyncpg.connect(url, timeout=2)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    return asyncio.run(probe())


def check_mongo(url: str) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=1500)
    try:
        return bool(client.admin.command("ping").get("ok"))
    finally:
        client.close()


def check_redis(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def check_nats(url: str, monitor_port: int | None = None) -> bool:
    if monitor_port is not None:
        return stores.nats_healthy(monitor_port)
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=1.5) as s:
        return s.recv(5) == b"INFO "


def _log(name: str) -> Path:
    return LOGS / f"{name}.log"


def _create_databases(url: str) -> None:
    asyncio.run(stores.create_databases(url))


def _database_url(admin_url: str, database: str) -> str:
    """The URL of one service's database on the server `admin_url` points at."""
    parsed = urlparse(admin_url)
    return parsed._replace(path=f"/{database}").geturl()


def boot_nice() -> int:
    """The nice value a Python service boots at (CINEMA_BOOT_NICE, default 10; see ManagedProcess)."""
    value = int(os.environ.get("CINEMA_BOOT_NICE", "10"))
    if not 0 <= value <= 19:
        raise ValueError(f"CINEMA_BOOT_NICE must be from 0 to 19, not {value}")
    return value


def instance_name(service: str, k: int) -> str:
    """The component (and log, and state) name of instance k of a service: `reservation`, `reservation-2`."""
    return service if k == 1 else f"{service}-{k}"


# FerretDB v1 does not isolate concurrent updates of one document (services/kit/events/doc_outbox.py):
# a service that updates documents in place runs one instance on it (the chart pins it the same way).
ONE_INSTANCE_ON_FERRETDB = ("movie",)


def instances(service: str) -> int:
    """How many instances of `service` the stack runs (read when the components are built)."""
    own = os.environ.get(f"CINEMA_{service.upper()}_INSTANCES")
    value = own or os.environ.get("CINEMA_INSTANCES") or str(DEFAULT_INSTANCES)
    count = int(value) if value.strip().isdigit() else 0
    var = f"CINEMA_{service.upper()}_INSTANCES" if own else "CINEMA_INSTANCES"
    if not 1 <= count <= MAX_INSTANCES:
        raise ValueError(f"{var} must be a whole number from 1 to {MAX_INSTANCES}, not {value!r}")
    if service in ONE_INSTANCE_ON_FERRETDB and not os.environ.get("MONGO_URL"):
        if own and count > 1:
            raise ValueError(
                f"{var}={count}: {service} updates documents in place and FerretDB does not isolate "
                "concurrent updates of one document; it runs one instance unless MONGO_URL names a real MongoDB"
            )
        return 1
    return count


def instance_ports(service: str) -> list[tuple[int, int]]:
    """(gRPC port, metrics port) of each instance the stack runs."""
    return INSTANCE_PORTS[service][: instances(service)]


def _service(name: str, env: dict[str, str], depends_on: tuple[str, ...], note: str, k: int = 1) -> Component:
    from scripts.stack.process import ManagedProcess
    from scripts.stack.services import grpc_serving

    port, metrics_port = INSTANCE_PORTS[name][k - 1]
    prefix = name.upper()
    env = {**env, f"{prefix}_GRPC_PORT": str(port), f"{prefix}_METRICS_PORT": str(metrics_port)}
    component = instance_name(name, k)

    def make() -> ManagedProcess:
        import sys

        from scripts.stack.paths import REPO

        return ManagedProcess(
            component,
            [sys.executable, "-m", f"services.{name}"],
            _log(component),
            lambda: grpc_serving(port),
            env=env,
            cwd=REPO,
            boot_nice=boot_nice(),
        )

    return Component(
        component,
        f"grpc://127.0.0.1:{port}",
        lambda: grpc_serving(port),
        make_process=make,
        ports=(port, metrics_port),
        depends_on=depends_on,
        note=f"{note}; metrics http://127.0.0.1:{metrics_port}/metrics",
    )


def local_components() -> list[Component]:
    """The stores and services of the local system, in start order."""
    components: list[Component] = []

    if pg_ext := os.environ.get("DATABASE_URL"):
        components.append(Component("postgres", pg_ext, lambda: check_postgres(pg_ext), note="external (DATABASE_URL)"))
    else:
        spec = stores.PostgresSpec(stores.pg_data_dir(DATA / "postgres"), PG_PORT)
        components.append(
            Component(
                "postgres",
                spec.url(),
                lambda: check_postgres(spec.url()),
                make_process=lambda: stores.postgres_process(spec, _log("postgres")),
                after_ready=lambda: _create_databases(spec.url()),
                ports=(PG_PORT,),
                note="databases: " + ", ".join(stores.PG_DATABASES),
            )
        )

    if mongo_ext := os.environ.get("MONGO_URL"):
        components.append(Component("mongo", mongo_ext, lambda: check_mongo(mongo_ext), note="external (MONGO_URL)"))
    else:
        murl = stores.mongo_url(MONGO_PORT)
        components.append(
            Component(
                "mongo",
                murl,
                lambda: check_mongo(murl),
                make_process=lambda: stores.ferretdb_process(DATA / "ferretdb", MONGO_PORT, _log("ferretdb")),
                note="FerretDB (MongoDB wire protocol) on SQLite",
                ports=(MONGO_PORT,),
            )
        )

    if redis_ext := os.environ.get("REDIS_URL"):
        components.append(Component("redis", redis_ext, lambda: check_redis(redis_ext), note="external (REDIS_URL)"))
    else:
        rurl = stores.redis_url(REDIS_PORT)
        components.append(
            Component(
                "redis",
                rurl,
                lambda: check_redis(rurl),
                make_process=lambda: stores.redis_process(DATA / "redis", REDIS_PORT, _log("redis")),
                note="append-only file under .data/redis",
                ports=(REDIS_PORT,),
            )
        )

    if nats_ext := os.environ.get("NATS_URL"):
        components.append(Component("nats", nats_ext, lambda: check_nats(nats_ext), note="external (NATS_URL)"))
    else:
        nspec = stores.NatsSpec(DATA / "nats", NATS_PORT, NATS_MONITOR_PORT)
        components.append(
            Component(
                "nats",
                nspec.url,
                lambda: check_nats(nspec.url, NATS_MONITOR_PORT),
                make_process=lambda: stores.nats_process(nspec, _log("nats")),
                note=f"JetStream; monitor http://127.0.0.1:{NATS_MONITOR_PORT}",
                ports=(NATS_PORT, NATS_MONITOR_PORT),
            )
        )

    components.append(smtp_sink_component())
    components.append(jaeger.component(jaeger_spec(), _log("jaeger")))
    components += edge_components(components)
    components += service_components(components)
    return components


def smtp_sink_component() -> Component:
    """The local mail server: keeps every mail the notification service sends as a .eml file."""
    import sys

    from scripts.stack.paths import REPO
    from scripts.stack.process import port_open

    mail = DATA / "mail"

    def make() -> ManagedProcess:
        argv = [sys.executable, "-m", "scripts.smtp_sink", "--port", str(SMTP_PORT), "--dir", str(mail)]
        return ManagedProcess("smtp", argv, _log("smtp"), lambda: port_open(SMTP_PORT), cwd=REPO)

    return Component(
        "smtp",
        f"smtp://127.0.0.1:{SMTP_PORT}",
        lambda: port_open(SMTP_PORT),
        make_process=make,
        ports=(SMTP_PORT,),
        note=f"sink: mail kept in {mail}",
    )


def jaeger_spec() -> jaeger.JaegerSpec:
    return jaeger.JaegerSpec(DATA / "jaeger")


DEFAULT_TRACE_SAMPLE_RATIO = 0.1


def trace_sample_ratio() -> float:
    """The share of new traces recorded (CINEMA_TRACE_SAMPLE_RATIO, default a tenth): recording
    every request cost a fifth of the services' CPU (py-spy: opentelemetry 19-30 % of self time)."""
    value = float(os.environ.get("CINEMA_TRACE_SAMPLE_RATIO", DEFAULT_TRACE_SAMPLE_RATIO))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"CINEMA_TRACE_SAMPLE_RATIO must be between 0 and 1, not {value}")
    return value


def ingress_rate_limit_per_s() -> int | None:
    """CINEMA_INGRESS_RATE_LIMIT_PER_S replaces the ingress's token bucket of the values (the
    benchmark's scratch stack raises it: one client driving hundreds of calls a second)."""
    value = os.environ.get("CINEMA_INGRESS_RATE_LIMIT_PER_S")
    if not value:
        return None
    if int(value) <= 0:
        raise ValueError(f"CINEMA_INGRESS_RATE_LIMIT_PER_S must be positive, not {value}")
    return int(value)


def tracing_env(prefix: str) -> dict[str, str]:
    """Export the spans of the component with this variable prefix to the local Jaeger, sampled
    like every other component (the ingress decides for outside requests; services follow it)."""
    return {
        f"{prefix}_OTLP_ENDPOINT": jaeger_spec().otlp_http_endpoint,
        f"{prefix}_TRACE_SAMPLE_RATIO": str(trace_sample_ratio()),
    }


def mesh_page_env() -> dict[str, str]:
    """What the web service's mesh page samples (services/web/settings.py): this stack's Envoy
    admin, NATS monitoring, Jaeger query API and the metrics endpoint of every instance of each
    service (a name repeats once per instance; the page adds the instances up)."""
    metrics = [(name, metrics_port) for name in SERVICE_PORTS for _grpc, metrics_port in instance_ports(name)]
    return {
        "WEB_MESH_ENVOY_ADMIN_URL": f"http://127.0.0.1:{ENVOY_ADMIN_PORT}",
        "WEB_MESH_NATS_MONITOR_URL": f"http://127.0.0.1:{NATS_MONITOR_PORT}",
        "WEB_MESH_JAEGER_URL": jaeger_spec().ui_url,
        "WEB_MESH_SERVICE_METRICS": ",".join(f"{n}=http://127.0.0.1:{port}/metrics" for n, port in metrics),
    }


def edge_components(stores_: list[Component]) -> list[Component]:
    """identity, Envoy, the gateway and the web screen (each stateless one with its instances)."""
    from scripts.stack import edge
    from scripts.stack.process import port_open

    urls = {c.name: c.url for c in stores_}
    identity = edge.IdentityEndpoints(IDENTITY_PORT)  # instance 1's address is the issuer's
    identity_dir = DATA / "identity"
    identity_db = _database_url(urls["postgres"], "identity")
    envoy_ports = edge.EnvoyPorts(INGRESS_PORT, ENVOY_ADMIN_PORT, EGRESS_PORTS)

    def identity_instance(k: int) -> Component:
        port = INSTANCE_PORTS["identity"][k - 1][0]
        name = instance_name("identity", k)
        health = f"http://127.0.0.1:{port}/healthz"
        return Component(
            name,
            f"http://127.0.0.1:{port}",
            lambda: edge.http_ok(health),
            make_process=lambda: edge.identity_process(
                identity, identity_db, _log(name), identity_dir, tracing_env("IDENTITY"), port=port, nice=boot_nice()
            ),
            # the demo accounts, once (idempotent): by the first instance
            after_ready=(
                (lambda: edge.seed_identity(identity_db, identity_dir / "reservation.secret", identity_dir))
                if k == 1
                else None
            ),
            ports=(port,),
            depends_on=("postgres",),
            note=f"OAuth2 token endpoint {identity.token_url}" if k == 1 else f"instance {k} of identity",
        )

    def gateway_instance(k: int) -> Component:
        port, metrics_port = INSTANCE_PORTS["gateway"][k - 1]
        name = instance_name("gateway", k)
        return Component(
            name,
            f"http://127.0.0.1:{port}",
            lambda: edge.http_ok(f"http://127.0.0.1:{port}/healthz"),
            make_process=lambda: edge.gateway_process(
                port, metrics_port, EGRESS_PORTS, _log(name), tracing_env("GATEWAY")
            ),
            ports=(port, metrics_port),
            depends_on=("envoy",),
            note=f"REST/JSON bridge; API page http://127.0.0.1:{INGRESS_PORT}/docs",
        )

    def web_instance(k: int) -> Component:
        import sys

        from scripts.stack.paths import REPO

        port = INSTANCE_PORTS["web"][k - 1][0]
        name = instance_name("web", k)
        health = f"http://127.0.0.1:{port}/healthz"
        env = {
            "WEB_HTTP_PORT": str(port),
            "WEB_REDIS_URL": urls["redis"],  # viewpage's: its change channel feeds the live updates
            "WEB_LOG_LEVEL": os.environ.get("CINEMA_LOG_LEVEL", "INFO"),
            **mesh_page_env(),
            **identity.auth_env("WEB"),  # the mesh page's data is for managers
        }
        argv = [sys.executable, "-m", "services.web"]
        return Component(
            name,
            f"http://127.0.0.1:{port}",
            lambda: edge.http_ok(health),
            make_process=lambda: ManagedProcess(
                name, argv, _log(name), lambda: edge.http_ok(health), env=env, cwd=REPO
            ),
            ports=(port,),
            depends_on=("redis", "envoy"),
            note=f"the web screen: http://127.0.0.1:{INGRESS_PORT}/ (through the ingress)",
        )

    def make_envoy() -> ManagedProcess:
        upstreams = {name: [port for port, _metrics in instance_ports(name)] for name in INSTANCE_PORTS}
        otlp = f"grpc://{jaeger_spec().otlp_grpc_endpoint}"
        config = edge.render_envoy(
            DATA / "envoy" / "envoy.yaml",
            envoy_ports,
            upstreams,
            identity,
            otlp,
            trace_sample_ratio(),
            ingress_rate_limit_per_s(),
        )
        return edge.envoy_process(config, ENVOY_ADMIN_PORT, _log("envoy"))

    envoy = Component(
        "envoy",
        f"http://127.0.0.1:{INGRESS_PORT}",
        lambda: port_open(INGRESS_PORT) and edge.http_ok(f"http://127.0.0.1:{ENVOY_ADMIN_PORT}/ready"),
        make_process=make_envoy,
        ports=(INGRESS_PORT, ENVOY_ADMIN_PORT, *EGRESS_PORTS.values()),
        depends_on=("identity",),
        note=f"ingress (REST + gRPC); admin http://127.0.0.1:{ENVOY_ADMIN_PORT}",
    )
    return [
        *(identity_instance(k) for k in range(1, instances("identity") + 1)),
        envoy,
        *(gateway_instance(k) for k in range(1, instances("gateway") + 1)),
        *(web_instance(k) for k in range(1, instances("web") + 1)),
    ]


def service_components(stores_: list[Component]) -> list[Component]:
    """Every instance of every service, in start order (each instance is its own component: the
    supervisor restarts it alone, and Envoy balances over the instances)."""
    from scripts.stack import edge

    urls = {c.name: c.url for c in stores_}
    identity = edge.IdentityEndpoints(IDENTITY_PORT)
    common = {"CINEMA_LOG_LEVEL": os.environ.get("CINEMA_LOG_LEVEL", "INFO")}
    payment_env = {
        **common,
        "PAYMENT_DATABASE_URL": _database_url(urls["postgres"], "payment"),
        "PAYMENT_NATS_URL": urls["nats"],
        **identity.auth_env("PAYMENT"),
        **tracing_env("PAYMENT"),
    }
    reservation_env = {
        **common,
        "RESERVATION_DATABASE_URL": _database_url(urls["postgres"], "reservation"),
        "RESERVATION_NATS_URL": urls["nats"],
        # through Envoy's payment listener: the mesh's retries, timeout and breaker apply
        "RESERVATION_PAYMENT_ADDRESS": f"127.0.0.1:{EGRESS_PORTS['payment']}",
        "RESERVATION_TOKEN_URL": identity.token_url,
        "RESERVATION_CLIENT_ID": "reservation",
        "RESERVATION_CLIENT_SECRET_FILE": str(DATA / "identity" / "reservation.secret"),
        **identity.auth_env("RESERVATION"),
        **tracing_env("RESERVATION"),
    }
    movie_env = {
        **common,
        "MOVIE_MONGO_URL": urls["mongo"],
        "MOVIE_NATS_URL": urls["nats"],
        **identity.auth_env("MOVIE"),
        **tracing_env("MOVIE"),
    }
    review_env = {
        **common,
        "REVIEW_MONGO_URL": urls["mongo"],
        "REVIEW_NATS_URL": urls["nats"],
        **identity.auth_env("REVIEW"),
        **tracing_env("REVIEW"),
    }
    notification_env = {
        **common,
        "NOTIFICATION_DATABASE_URL": _database_url(urls["postgres"], "notification"),
        "NOTIFICATION_NATS_URL": urls["nats"],
        "NOTIFICATION_SMTP_HOST": "127.0.0.1",
        "NOTIFICATION_SMTP_PORT": str(SMTP_PORT),
        **identity.auth_env("NOTIFICATION"),
        **tracing_env("NOTIFICATION"),
    }
    viewpage_env = {
        **common,
        "VIEWPAGE_REDIS_URL": urls["redis"],
        "VIEWPAGE_NATS_URL": urls["nats"],
        **identity.auth_env("VIEWPAGE"),
        **tracing_env("VIEWPAGE"),
    }
    # reservation waits for payment's first instance (it calls payment) and for Envoy (it calls
    # payment through Envoy's listener); a later instance has the same dependencies as the first
    plan: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
        ("viewpage", viewpage_env, ("redis", "nats", "identity")),
        ("notification", notification_env, ("postgres", "nats", "smtp", "identity")),
        ("movie", movie_env, ("mongo", "nats", "identity")),
        ("review", review_env, ("mongo", "nats", "identity")),
        ("payment", payment_env, ("postgres", "nats", "identity")),
        ("reservation", reservation_env, ("postgres", "nats", "identity", "payment", "envoy")),
    ]
    return [
        _service(name, env, depends_on, f"instance {k} of {instances(name)}", k)
        for name, env, depends_on in plan
        for k in range(1, instances(name) + 1)
    ]
