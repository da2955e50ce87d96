"""`python -m services.payment` as its own process: migrate command, serve, refund after a restart,
SIGTERM -> exit 0, and not one card number in anything it logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext

from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from services.kit.events import jetstream
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.adapters.store import migrate
from services.payment.domain.processor import CARD_APPROVED, CARD_INSUFFICIENT_FUNDS, CARD_PROCESSOR_ERROR
from tests.integration.payment.conftest import Metadata
from tests.integration.payment.helpers import (
    TEST_CARDS,
    authorize_request,
    card,
    payment_events_of,
    reservation_cancelled,
)
from tests.support.polling import eventually
from tests.support.servers import Server, create_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
BAD_CHECKSUM_CARD = "4242424242424241"


def service_env(database_url: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path) -> dict[str, str]:
    return os.environ | {
        "PAYMENT_DATABASE_URL": database_url,
        "PAYMENT_NATS_URL": nats_url,
        "PAYMENT_GRPC_PORT": "0",
        "PAYMENT_METRICS_PORT": "0",
        "PAYMENT_JWKS_SOURCE": str(jwks),
        "PAYMENT_JWT_ISSUER": issuer.issuer,
        "PAYMENT_JWT_AUDIENCE": issuer.audience,
        "PAYMENT_DRAIN_S": "0.2",
        "PAYMENT_SHUTDOWN_GRACE_S": "2",
        "PAYMENT_LOG_LEVEL": "DEBUG",  # the most talkative it gets: still no card number
        "PYTHONPATH": str(REPO),
    }


class PaymentProcess:
    """`python -m services.payment` with every line it writes (stdout and stderr) collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.raw: list[str] = []
        self.lines: list[dict[str, Any]] = []
        self.started = asyncio.Event()
        self.readers = [
            asyncio.ensure_future(self._read(stream)) for stream in (process.stdout, process.stderr) if stream
        ]

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> PaymentProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.payment",
            *args,
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            text = raw.decode(errors="replace")
            self.raw.append(text)
            try:
                line = json.loads(text)
            except ValueError:
                line = {"message": text.rstrip()}
            self.lines.append(line)
            if line.get("message") == "service started":
                self.started.set()

    @property
    def port(self) -> int:
        return int(next(line["port"] for line in self.lines if line.get("message") == "service started"))

    def messages(self) -> list[str]:
        return [str(line.get("message")) for line in self.lines]

    async def wait_started(self) -> None:
        waiter = asyncio.ensure_future(self.started.wait())
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait({waiter, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        assert self.started.is_set(), f"payment did not start: {''.join(self.raw)[-3000:]}"

    async def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout=30)
        await asyncio.wait_for(asyncio.gather(*self.readers), timeout=5)
        return code

    async def finish(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout=60)
        await asyncio.wait_for(asyncio.gather(*self.readers), timeout=5)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self.readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def assert_no_card_number(output: str) -> None:
    for number in (*TEST_CARDS, BAD_CHECKSUM_CARD):
        spaced = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        assert number not in output, "a card number reached the logs"
        assert spaced not in output, "a card number (grouped) reached the logs"


def assert_no_card_details(lines: list[dict[str, Any]]) -> None:
    """At DEBUG, libraries log values they see; none may be a card's (the CVC has no pattern to redact)."""
    assert lines, "no log lines were collected"
    for line in lines:
        assert not str(line.get("logger", "")).startswith("celpy"), line
        assert "StringType(" not in json.dumps(line), line


async def test_migrations_apply_once_and_are_idempotent(postgres_server: Server, tmp_path: Path) -> None:
    database = await create_database(postgres_server, "payment_migrate")
    assert await migrate(database) == [1, 2]
    assert await migrate(database) == []
    env = os.environ | {"PAYMENT_DATABASE_URL": database, "PYTHONPATH": str(REPO)}
    for _ in range(2):
        command = await PaymentProcess.start(env, "migrate")
        try:
            assert await command.finish() == 0
        finally:
            await command.kill()
        assert "payment database migrated" in command.messages()
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT array_agg(version ORDER BY version) FROM schema_migrations") == [1, 2]
    finally:
        await conn.close()


async def test_the_process_serves_refunds_after_a_restart_stops_on_sigterm_and_never_logs_a_card(
    postgres_server: Server,
    nats_server: Server,
    js: JetStreamContext,
    issuer: LocalTokenIssuer,
    jwks_path: Path,
    service_token: Metadata,
) -> None:
    database = await create_database(postgres_server, "payment_process")
    env = service_env(database, nats_server.url, issuer, jwks_path)
    outputs: list[str] = []

    first = await PaymentProcess.start(env)
    try:
        await first.wait_started()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            stub = payment_pb2_grpc.PaymentServiceStub(channel)
            approved = (
                await stub.AuthorizePayment(authorize_request(number=CARD_APPROVED), metadata=service_token, timeout=5)
            ).payment
            assert approved.state == payment_pb2.PAYMENT_STATE_APPROVED
            declined = await stub.AuthorizePayment(
                authorize_request(number=CARD_INSUFFICIENT_FUNDS), metadata=service_token, timeout=5
            )
            assert declined.payment.decline_reason == "insufficient_funds"
            for number, code in (
                (CARD_PROCESSOR_ERROR, grpc.StatusCode.UNAVAILABLE),
                (BAD_CHECKSUM_CARD, grpc.StatusCode.INVALID_ARGUMENT),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.AuthorizePayment(authorize_request(number=number), metadata=service_token, timeout=5)
                assert raised.value.code() is code
                assert number not in (raised.value.details() or "")
            spaced = authorize_request(card_message=card("4242 4242 4242 4242"))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.AuthorizePayment(spaced, metadata=service_token, timeout=5)
            assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert await first.terminate() == 0
    finally:
        await first.kill()
        outputs.extend(first.raw)
    messages = first.messages()
    assert messages.index("service stopping") < messages.index("payment resources closed")
    assert messages.index("payment resources closed") < messages.index("service stopped")

    # Payment is down while the reservation is cancelled; the refund follows when it is back.
    cancelled = reservation_cancelled(approved.reservation_id, payment_id=approved.id)
    await jetstream.publish(js, cancelled)

    second = await PaymentProcess.start(env)
    try:
        await second.wait_started()
        conn = await asyncpg.connect(database)
        try:

            async def refunded() -> bool:
                state = await conn.fetchval("SELECT state FROM payments WHERE id = $1", uuid.UUID(approved.id))
                return bool(state == "REFUNDED")

            await eventually(refunded, within_s=20)
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 2
        finally:
            await conn.close()
        [envelope] = await payment_events_of(js, "cinema.payment.refunded", approved.reservation_id)
        assert envelope.aggregate_id == approved.id
        assert await second.terminate() == 0
    finally:
        await second.kill()
        outputs.extend(second.raw)
    assert "service stopped" in second.messages()
    assert any("refund refunded" in m for m in second.messages())
    assert_no_card_number("".join(outputs))
    assert_no_card_details(first.lines + second.lines)


def _metric(text: str, name: str, outcome: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _scrape(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(get)


async def test_two_processes_asked_at_once_about_one_reservation_make_one_payment_and_one_charge(
    postgres_server: Server, nats_server: Server, issuer: LocalTokenIssuer, jwks_path: Path, service_token: Metadata
) -> None:
    database = await create_database(postgres_server, "payment_two_processes")
    # Both instances are at the processor at once for every reservation.
    env = service_env(database, nats_server.url, issuer, jwks_path) | {
        "PAYMENT_PROCESSOR_LATENCY_MS": "300",
        "PAYMENT_LOG_LEVEL": "INFO",
    }
    migrating = await PaymentProcess.start(env, "migrate")
    try:
        assert await migrating.finish() == 0
    finally:
        await migrating.kill()
    instances = [await PaymentProcess.start(env), await PaymentProcess.start(env)]
    try:
        for process in instances:
            await process.wait_started()
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p.port}") for p in instances]
        stubs = [payment_pb2_grpc.PaymentServiceStub(channel) for channel in channels]
        requests = [authorize_request() for _ in range(20)]
        replies = await asyncio.gather(
            *(s.AuthorizePayment(r, metadata=service_token, timeout=10) for r in requests for s in stubs)
        )
        for channel in channels:
            await channel.close(None)
        for index in range(len(requests)):
            on_first, on_second = replies[2 * index].payment, replies[2 * index + 1].payment
            assert on_first.id == on_second.id and on_first.state == payment_pb2.PAYMENT_STATE_APPROVED
        conn = await asyncpg.connect(database)
        try:
            assert await conn.fetchval("SELECT count(*) FROM payments") == len(requests)
        finally:
            await conn.close()
        metrics_ports = [
            int(next(line["metrics_port"] for line in p.lines if line.get("message") == "service started"))
            for p in instances
        ]
        scraped = [await _scrape(port) for port in metrics_ports]
        name = "cinema_payment_processor_calls_total"
        charged = sum(_metric(text, name, "approved") for text in scraped)
        repeats = sum(_metric(text, name, "repeat") for text in scraped)
        assert (charged, repeats) == (len(requests), len(requests))  # one charge per reservation
        for process in instances:
            assert await process.terminate() == 0
    finally:
        for process in instances:
            await process.kill()
