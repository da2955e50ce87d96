"""The mail follows who cancelled, end to end: the real reservation, payment and notification
services on real PostgreSQL, NATS and the SMTP sink process. A customer who cancels gets their
own wording (their reason shown as theirs), a manager's cancellation the cinema's, a cancelled
screening the cinema's with the reason; each mail once. A manager's own booking is mailed to
the manager's address; one with no address at all is parked NO_RECIPIENT, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import grpc.aio
import pytest
from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY

from cinema.movie.v1 import events_pb2 as movie_events
from cinema.reservation.v1 import reservation_pb2 as pb
from cinema.reservation.v1 import reservation_pb2_grpc
from services.kit.events import envelope as env
from services.kit.server import ServiceHost
from services.kit.testing_tokens import LocalTokenIssuer
from services.notification.bootstrap import NotificationApp
from services.notification.entrypoints.consumers import DURABLE as NOTIFICATION_DURABLE
from services.notification.entrypoints.consumers import NotificationEventHandler
from services.payment.entrypoints.reservation_events import DURABLE as PAYMENT_DURABLE
from services.reservation.bootstrap import ReservationApp
from services.reservation.entrypoints.catalog_consumer import DURABLE as RESERVATION_DURABLE
from tests.integration.notification.conftest import consumers_exist, fresh_streams, settings_for
from tests.integration.notification.helpers import SmtpSink

# The real payment and reservation services, as the reservation tests start them.
from tests.integration.reservation.conftest import (  # noqa: F401 (fixtures)
    Metadata,
    payment,
    payment_token_file,
    reservation,
    reservation_db,
)
from tests.integration.reservation.helpers import create_request, events_of, publish, schedule
from tests.support.polling import eventually
from tests.support.polling import eventually as first_result
from tests.support.servers import Server, create_database

if TYPE_CHECKING:
    from cinema.reservation.v1.reservation_pb2_grpc import ReservationServiceAsyncStub as Stub

pytestmark = pytest.mark.integration

TITLE = "Metropolis"


@pytest.fixture(scope="module")
async def js(nats_server: Server) -> AsyncIterator[JetStreamContext]:
    """The streams, with every durable these services use started afresh for this module."""
    durables = [
        ("CINEMA_MOVIE", RESERVATION_DURABLE),
        ("CINEMA_RESERVATION", PAYMENT_DURABLE),
        ("CINEMA_RESERVATION", NOTIFICATION_DURABLE),
        ("CINEMA_PAYMENT", NOTIFICATION_DURABLE),
    ]
    async with fresh_streams(nats_server.url, durables) as js:
        yield js


@pytest.fixture(scope="module")
async def notification(
    postgres_server: Server,
    nats_server: Server,
    js: JetStreamContext,
    sink: SmtpSink,
    issuer: LocalTokenIssuer,
    jwks_path: Path,
) -> AsyncIterator[NotificationApp]:
    database = await create_database(postgres_server, "notification")
    app = NotificationApp(settings_for(database, nats_server.url, sink.port, issuer, jwks_path))
    async with app.host():
        await eventually(lambda: consumers_exist(js))
        yield app


@pytest.fixture(scope="module")
async def stub(
    reservation: tuple[ReservationApp, ServiceHost],  # noqa: F811 (the imported fixture)
    notification: NotificationApp,
    issuer: LocalTokenIssuer,
) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(reservation[1].address) as channel:
        stub = reservation_pb2_grpc.ReservationServiceStub(channel)
        # The first authenticated call waits for the service's first key load.
        await stub.ListReservations(pb.ListReservationsRequest(), metadata=issuer.metadata(issuer.mint("warm-up")))
        yield stub


def person(issuer: LocalTokenIssuer, role: str, *, with_email: bool = True) -> tuple[str, Metadata]:
    """A token for a new person of `role`; its `email` claim is <subject>@example.com, or none."""
    subject = f"{role}-{uuid.uuid4().hex[:8]}"
    claims = {"email": f"{subject}@example.com"} if with_email else {}
    return subject, issuer.metadata(issuer.mint(subject, roles={role}, extra_claims=claims, ttl_s=600))


async def book(js: JetStreamContext, stub: Stub, who: Metadata, seats: list[str]) -> tuple[str, pb.Reservation]:
    screening_id = await schedule(js, title=TITLE)

    async def booked() -> pb.Reservation | None:
        try:
            return (await stub.CreateReservation(create_request(screening_id, seats), metadata=who)).reservation
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:  # the replica has not seen the screening yet
                return None
            raise

    return screening_id, await first_result(booked, within_s=30)


def text(mail: EmailMessage) -> str:
    """The body with plain line ends (mail travels with CRLF)."""
    content = mail.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def mails_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    return [m for m in sink.mails() if m["To"] == address]


async def settled(pool: asyncpg.Pool, reservation_id: str, count: int) -> bool:
    """`count` notifications of the reservation recorded, none still to deliver."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE state IN ('PENDING', 'RETRYING')) AS due"
        " FROM notifications WHERE reservation_id = $1",
        reservation_id,
    )
    return row is not None and row["n"] == count and row["due"] == 0


async def the_mails(
    notification: NotificationApp, sink: SmtpSink, address: str, reservation_id: str
) -> dict[str, EmailMessage]:
    """The confirmation, cancellation and refund mails of one reservation, once each, by subject."""
    pool = notification.pool
    assert pool is not None
    await eventually(lambda: settled(pool, reservation_id, 3), within_s=45)
    await eventually(lambda: asyncio.to_thread(lambda: len(mails_to(sink, address)) >= 3))
    await asyncio.sleep(0.5)  # a second copy of any of them would be out by now
    mails = mails_to(sink, address)
    assert len(mails) == 3, [m["Subject"] for m in mails]
    assert len({m["Message-ID"] for m in mails}) == 3  # each mail once
    return {str(m["Subject"]): m for m in mails}


async def test_a_customer_who_cancels_gets_their_own_wording_with_their_reason_once(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, sink: SmtpSink, notification: NotificationApp
) -> None:
    subject, me = person(issuer, "customer")
    _screening, made = await book(js, stub, me, ["A1", "A2"])
    cancel = pb.CancelReservationRequest(reservation_id=made.id, reason="plans changed")
    await stub.CancelReservation(cancel, metadata=me)
    # The cancellation delivered once more (a lost ack): still one mail.
    [(envelope, _event)] = await events_of(js, "cinema.reservation.cancelled", made.id)
    await NotificationEventHandler(notification.deps)(envelope, env.unwrap(envelope))

    mails = await the_mails(notification, sink, f"{subject}@example.com", made.id)

    assert set(mails) == {
        f"Your seats for {TITLE} are confirmed",
        f"You cancelled your reservation for {TITLE}",
        "Your refund of 24.00 EUR is on its way",
    }
    body = text(mails[f"You cancelled your reservation for {TITLE}"])
    assert "you cancelled your reservation; the seats are free again." in body
    assert "  Your reason: plans changed\n" in body
    assert "sorry" not in body and "We cancelled" not in body and "Why:" not in body


async def test_a_manager_who_cancels_a_customers_reservation_sends_the_cinemas_wording_once(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, sink: SmtpSink, notification: NotificationApp
) -> None:
    subject, me = person(issuer, "customer")
    _manager, manager = person(issuer, "manager")
    _screening, made = await book(js, stub, me, ["B1"])
    cancel = pb.CancelReservationRequest(reservation_id=made.id, reason="hall flooded")
    await stub.CancelReservation(cancel, metadata=manager)

    mails = await the_mails(notification, sink, f"{subject}@example.com", made.id)

    body = text(mails[f"We cancelled your reservation for {TITLE}"])
    assert "we are sorry: we had to cancel your reservation." in body
    assert "  Why:     hall flooded\n" in body
    assert "you cancelled" not in body.lower() and "Your reason" not in body


async def test_a_cancelled_screening_sends_the_cinemas_wording_with_the_reason_once(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, sink: SmtpSink, notification: NotificationApp
) -> None:
    subject, me = person(issuer, "customer")
    screening_id, made = await book(js, stub, me, ["C1"])
    await publish(
        js, movie_events.ScreeningCancelled(screening_id=screening_id, reason="projector broke"), screening_id, 2
    )

    mails = await the_mails(notification, sink, f"{subject}@example.com", made.id)

    [screening_mail] = [m for s, m in mails.items() if s.startswith(f"Screening cancelled: {TITLE} on ")]
    body = text(screening_mail)
    assert f"we are sorry: the screening of {TITLE}" in body and "will not take place" in body
    assert "  Why:     projector broke\n" in body
    assert "you cancelled" not in body.lower()


async def test_a_managers_own_booking_is_mailed_to_the_managers_address(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, sink: SmtpSink, notification: NotificationApp
) -> None:
    manager, token = person(issuer, "manager")
    _screening, made = await book(js, stub, token, ["D1"])
    await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=made.id), metadata=token)

    mails = await the_mails(notification, sink, f"{manager}@example.com", made.id)

    assert f"You cancelled your reservation for {TITLE}" in mails  # their own booking, their own wording
    assert "Your reason" not in text(mails[f"You cancelled your reservation for {TITLE}"])


async def test_a_booking_with_no_address_is_parked_no_recipient_counted_and_logged(
    js: JetStreamContext,
    stub: Stub,
    issuer: LocalTokenIssuer,
    notification: NotificationApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def parked() -> float:
        return REGISTRY.get_sample_value("cinema_notifications_no_recipient_total", {"kind": "CONFIRMED"}) or 0.0

    before = parked()
    _manager, token = person(issuer, "manager", with_email=False)  # a manager account without an e-mail
    with caplog.at_level(logging.INFO, logger="services.notification"):
        _screening, made = await book(js, stub, token, ["E1"])
        assert notification.pool is not None
        pool = notification.pool

        async def recorded() -> bool:
            # The row is visible once committed, a moment before the consumer counts and logs it
            # (the counter and the log line follow the insert in one step): wait for the counter.
            return await settled(pool, made.id, 1) and parked() == before + 1

        await eventually(recorded)

    row = await pool.fetchrow("SELECT state, last_error FROM notifications WHERE reservation_id = $1", made.id)
    assert row is not None and row["state"] == "PARKED" and row["last_error"].startswith("NO_RECIPIENT")
    assert parked() == before + 1
    [record] = [r for r in caplog.records if "nobody to send it to" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert record.reservation_id == made.id and record.reason == "NO_RECIPIENT"  # type: ignore[attr-defined]
