"""`python -m services.identity` as its own processes: migrate, seed-demo (idempotent, secret file
0600), add-user (password on stdin), add-client, rotate-keys, serve until SIGTERM (exit 0, pool
closed), and not one password, secret or token in anything it logged (at DEBUG)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from scripts.stack.process import free_port
from services.identity.service_layer import accounts
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def identity_env(database_url: str, port: int) -> dict[str, str]:
    return os.environ | {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_HTTP_PORT": str(port),
        "IDENTITY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "IDENTITY_DRAIN_S": "0.3",
        "IDENTITY_SHUTDOWN_GRACE_S": "2",
        "IDENTITY_LOG_LEVEL": "DEBUG",
        "IDENTITY_ARGON2_MEMORY_KIB": "4096",
        "IDENTITY_ARGON2_TIME_COST": "1",
        "PYTHONPATH": str(REPO),
    }


async def run(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.identity",
        *args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"message": raw})
    return lines


async def test_admin_commands(postgres_server: Server, tmp_path: Path) -> None:
    database = await create_database(postgres_server, "identity_cli")
    env = identity_env(database, free_port())
    logs = []

    code, _out, err = await run(env, "migrate")
    logs.append(err)
    assert code == 0, err
    code, _out, err = await run(env, "migrate")
    assert code == 0, err

    secret_file = tmp_path / "secrets" / "reservation.secret"
    code, _out, err = await run(env, "seed-demo", "--client-secret-file", str(secret_file))
    logs.append(err)
    assert code == 0, err
    secret = secret_file.read_text().strip()
    assert len(secret) >= 40
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # idempotent: the same accounts, the same secret
    code, _out, err = await run(env, "seed-demo", "--client-secret-file", str(secret_file))
    logs.append(err)
    assert code == 0, err
    assert secret_file.read_text().strip() == secret
    # a lost secret file gets a new secret (and the old one stops working)
    secret_file.unlink()
    code, _out, err = await run(env, "seed-demo", "--client-secret-file", str(secret_file))
    assert code == 0, err
    new_secret = secret_file.read_text().strip()
    assert new_secret != secret

    code, _out, err = await run(
        env, "add-user", "Alice", "--role", "customer", "--email", "a@x.test", stdin=b"wonderland-rabbit-hole\n"
    )
    logs.append(err)
    assert code == 0, err
    code, _out, err = await run(env, "add-user", "alice", "--role", "customer", stdin=b"another-password\n")
    assert code == 1 and "already exists" in err
    code, _out, err = await run(env, "add-user", "bob", "--role", "customer", stdin=b"short\n")
    assert code == 1 and "at least 12 characters" in err
    code, _out, err = await run(env, "add-user", "bob", "--role", "admin", stdin=b"stranger-danger-12\n")
    assert code == 1 and "unknown role" in err

    tool_file = tmp_path / "tool.secret"
    code, _out, err = await run(
        env, "add-client", "load-generator", "--role", "customer", "--secret-file", str(tool_file)
    )
    assert code == 0, err
    code, out, err = await run(env, "add-client", "report-tool", "--role", "manager")
    assert code == 0, err
    printed_secret = out.strip()
    assert len(printed_secret) >= 40

    conn = await asyncpg.connect(database)
    try:
        first_kid = await conn.fetchval("SELECT kid FROM signing_keys WHERE retired_at IS NULL")
        assert first_kid is None  # admin commands do not make keys; serve and rotate-keys do
        code, _out, err = await run(env, "rotate-keys")
        assert code == 0, err
        code, _out, err = await run(env, "rotate-keys")
        assert code == 0, err
        assert await conn.fetchval("SELECT count(*) FROM signing_keys") == 2
        assert await conn.fetchval("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL") == 1
        users = {r["username"]: r for r in await conn.fetch("SELECT username, roles, email, password_hash FROM users")}
        assert set(users) == {"demo-customer", "demo-manager", "alice"}
        assert users["alice"]["email"] == "a@x.test" and users["alice"]["password_hash"].startswith("$argon2id$")
    finally:
        await conn.close()

    everything = "".join(logs)
    for secret_text in (
        secret,
        new_secret,
        printed_secret,
        "wonderland-rabbit-hole",
        "popcorn-customer",
        "popcorn-manager",
    ):
        assert secret_text not in everything


async def test_serve_issues_tokens_and_stops_on_sigterm_without_logging_secrets(
    postgres_server: Server, tmp_path: Path
) -> None:
    database = await create_database(postgres_server, "identity_serve")
    port = free_port()
    env = identity_env(database, port)
    secret_file = tmp_path / "reservation.secret"
    code, _out, err = await run(env, "seed-demo", "--client-secret-file", str(secret_file))
    assert code == 0, err
    secret = secret_file.read_text().strip()

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.identity", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    tokens: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(200):
                try:
                    if (await http.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("identity did not become healthy")
            customer = accounts.DEMO_USERS[0]
            for form in (
                {"grant_type": "password", "username": customer.username, "password": customer.password},
                {"grant_type": "client_credentials", "client_id": "reservation", "client_secret": secret},
            ):
                response = await http.post(f"{base}/oauth2/token", data=form)
                assert response.status_code == 200, response.text
                tokens.append(response.json()["access_token"])
            refused = await http.post(
                f"{base}/oauth2/token",
                data={"grant_type": "password", "username": customer.username, "password": "my-secret-guess"},
            )
            assert refused.status_code == 400
            discovery = (await http.get(f"{base}/.well-known/openid-configuration")).json()
            assert discovery["issuer"] == base
            process.send_signal(signal.SIGTERM)
            # draining: still answering, but not ready
            await asyncio.sleep(0.1)
            assert (await http.get(f"{base}/healthz")).status_code == 503
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err_bytes.decode()[-3000:]
    output = out_bytes.decode() + err_bytes.decode()
    lines = log_lines(err_bytes.decode())
    messages = [line.get("message") for line in lines]
    for expected in (
        "service started",
        "token issued",
        "token refused",
        "signal received",
        "identity resources closed",
        "service stopped",
    ):
        assert expected in messages, expected
    assert all(line.get("service") == "identity" for line in lines if "level" in line)
    for secret_text in (secret, customer.password, "my-secret-guess", *tokens):
        assert secret_text not in output
    assert "IDENTITY_KEY_ENCRYPTION_KEY is not set" in output  # development start says so
