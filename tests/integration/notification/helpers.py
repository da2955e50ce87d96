"""The SMTP sink as a process (scripts/smtp_sink.py) and builders of the events notification consumes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.actor_pb2 import Actor
from cinema.common.v1.money_pb2 import Money
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.payment.v1.events_pb2 import PaymentRefunded
from cinema.reservation.v1.events_pb2 import ReservationCancelled, ReservationConfirmed
from scripts.stack.process import port_open
from services.kit.events import envelope as env
from tests.support.polling import eventually

REPO = Path(__file__).resolve().parents[3]
STARTS = datetime(2027, 3, 5, 19, 30, tzinfo=UTC)
DOMAIN = "notification.test"


class SmtpSink:
    """`python -m scripts.smtp_sink` on a port, storing into a folder; started and stopped by pid."""

    def __init__(self, port: int, folder: Path, reject: str | None = None) -> None:
        self.port = port
        self.folder = folder
        self.reject = reject
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder.parent / f"sink-{port}.log"

    async def start(self) -> None:
        args = [sys.executable, "-m", "scripts.smtp_sink", "--port", str(self.port), "--dir", str(self.folder)]
        if self.reject:
            args += ["--reject-recipient", self.reject]
        self.process = await asyncio.to_thread(self._spawn, args)
        await eventually(lambda: _open(self.port), within_s=30)

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            return subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            os.kill(process.pid, signal.SIGTERM)
            await asyncio.to_thread(process.wait, 15)

    def mails(self) -> list[EmailMessage]:
        found = []
        for path in sorted(self.folder.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found

    def count_by_message_id(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.mails())


async def _open(port: int) -> bool:
    return await asyncio.to_thread(port_open, port)


def message_id(envelope: EventEnvelope) -> str:
    return f"<{envelope.id}@{DOMAIN}>"


def _stamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def confirmed(
    *, customer_id: str = "customer-1", email_: str = "ada@example.com", reservation_id: str | None = None
) -> EventEnvelope:
    rid = reservation_id or str(uuid.uuid4())
    event = ReservationConfirmed(
        reservation_id=rid,
        customer_id=customer_id,
        customer_email=email_,
        screening_id=str(uuid.uuid4()),
        movie_id=str(uuid.uuid4()),
        movie_title="Metropolis",
        hall="Hall 2",
        start_time=_stamp(STARTS),
        seats=["A1", "A2"],
        amount=Money(minor_units=2400, currency_code="EUR"),
        payment_id=str(uuid.uuid4()),
    )
    return env.wrap(event, source="cinema/reservation", subject=rid, aggregate_id=rid, aggregate_version=2)


def cancelled(
    reason: str,
    *,
    customer_id: str = "customer-1",
    email_: str = "ada@example.com",
    reservation_id: str | None = None,
    by: Actor | None = None,
) -> EventEnvelope:
    """A ReservationCancelled; without `by` it is one written before events carried attribution."""
    rid = reservation_id or str(uuid.uuid4())
    event = ReservationCancelled(
        reservation_id=rid,
        customer_id=customer_id,
        customer_email=email_,
        screening_id=str(uuid.uuid4()),
        movie_id=str(uuid.uuid4()),
        movie_title="Nosferatu",
        start_time=_stamp(STARTS),
        seats=["C7"],
        amount=Money(minor_units=1200, currency_code="EUR"),
        payment_id=str(uuid.uuid4()),
        reason=reason,
    )
    if by is not None:
        event.cancelled_by.CopyFrom(by)
    return env.wrap(event, source="cinema/reservation", subject=rid, aggregate_id=rid, aggregate_version=3)


def refunded(*, reservation_id: str, customer_id: str = "customer-1", email_: str = "ada@example.com") -> EventEnvelope:
    payment_id = str(uuid.uuid4())
    event = PaymentRefunded(
        payment_id=payment_id,
        reservation_id=reservation_id,
        customer_id=customer_id,
        customer_email=email_,
        amount=Money(minor_units=1200, currency_code="EUR"),
    )
    return env.wrap(
        event, source="cinema/payment", subject=reservation_id, aggregate_id=payment_id, aggregate_version=2
    )
