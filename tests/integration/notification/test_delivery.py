"""Notification end to end on real PostgreSQL, NATS and the SMTP sink script: one mail per event,
redeliveries, a sink outage, a bouncing address, a poison event, a crash mid-handover, the API."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext

from cinema.common.v1.actor_pb2 import ACTOR_KIND_CUSTOMER, ACTOR_KIND_SYSTEM, Actor
from cinema.notification.v1 import notification_pb2 as pb
from cinema.notification.v1 import notification_pb2_grpc as pb_grpc
from services.kit import pg
from services.kit.events import envelope as env
from services.kit.events import jetstream
from services.kit.server import ServiceHost
from services.kit.testing_tokens import LocalTokenIssuer
from services.notification.adapters.events import facts_of
from services.notification.adapters.store import PgDeliveryLog, migrate
from services.notification.bootstrap import NotificationApp
from services.notification.entrypoints.consumers import NotificationEventHandler
from services.notification.entrypoints.dispatcher import Dispatcher
from services.notification.service_layer.notifications import record_notification
from services.notification.service_layer.ports import OutgoingMail
from tests.integration.notification.conftest import consumers_exist, consumers_idle, settings_for
from tests.integration.notification.helpers import SmtpSink, cancelled, confirmed, message_id, refunded
from tests.support.polling import eventually
from tests.support.servers import Server, create_database

if TYPE_CHECKING:
    from cinema.notification.v1.notification_pb2_grpc import NotificationServiceAsyncStub

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def database(postgres_server: Server) -> str:
    return await create_database(postgres_server, "notification")


@pytest.fixture(scope="module")
async def host(
    database: str,
    nats_server: Server,
    js: JetStreamContext,
    sink: SmtpSink,
    issuer: LocalTokenIssuer,
    jwks_path: Path,
) -> AsyncIterator[tuple[NotificationApp, ServiceHost]]:
    app = NotificationApp(settings_for(database, nats_server.url, sink.port, issuer, jwks_path))
    async with app.host() as running:
        await eventually(lambda: consumers_exist(js))
        yield app, running


@pytest.fixture(scope="module")
def app(host: tuple[NotificationApp, ServiceHost]) -> NotificationApp:
    return host[0]


@pytest.fixture(scope="module")
def pool(app: NotificationApp) -> asyncpg.Pool:
    assert app.pool is not None
    return app.pool


@pytest.fixture(scope="module")
async def stub(host: tuple[NotificationApp, ServiceHost]) -> AsyncIterator[NotificationServiceAsyncStub]:
    async with grpc.aio.insecure_channel(host[1].address) as channel:
        yield pb_grpc.NotificationServiceStub(channel)


async def row(pool: asyncpg.Pool, event_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT id, state, attempts, last_error, recipient FROM notifications WHERE event_id = $1", uuid.UUID(event_id)
    )


async def state_is(pool: asyncpg.Pool, event_id: str, state: str) -> bool:
    found = await row(pool, event_id)
    return found is not None and found["state"] == state


async def test_each_event_type_sends_one_mail_with_its_facts(
    js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    ok = confirmed()
    by_customer = cancelled("CANCELLED_BY_CUSTOMER", by=Actor(kind=ACTOR_KIND_CUSTOMER, id="customer-1"))
    by_screening = cancelled(
        "SCREENING_CANCELLED", by=Actor(kind=ACTOR_KIND_SYSTEM, id="system", cause="SCREENING_CANCELLED")
    )
    refund = refunded(reservation_id=env.unwrap(by_screening).reservation_id)  # type: ignore[attr-defined]
    for envelope in (ok, by_customer, by_screening):
        await jetstream.publish(js, envelope)
    await eventually(lambda: state_is(pool, by_screening.id, "SENT"))
    await jetstream.publish(js, refund)  # after the cancellation, as payment publishes it
    wanted = {message_id(e) for e in (ok, by_customer, by_screening, refund)}
    await eventually(lambda: asyncio.to_thread(lambda: wanted <= set(sink.count_by_message_id())))

    mails = {str(m["Message-ID"]): m for m in sink.mails() if str(m["Message-ID"]) in wanted}
    counts = sink.count_by_message_id()
    assert {k: counts[k] for k in wanted} == {k: 1 for k in wanted}
    confirmation = mails[message_id(ok)]
    assert confirmation["Subject"] == "Your seats for Metropolis are confirmed"
    assert confirmation["To"] == "ada@example.com"
    assert confirmation["X-Sink-Envelope-To"] == "ada@example.com"  # the sink script's record
    body = confirmation.get_content()
    for text in ("Metropolis", "Friday 05 March 2027, 19:30 UTC", "Hall 2", "A1, A2", "24.00 EUR"):
        assert text in body
    assert mails[message_id(by_customer)]["Subject"] == "You cancelled your reservation for Nosferatu"
    assert "you cancelled your reservation" in mails[message_id(by_customer)].get_content()
    screening = mails[message_id(by_screening)]
    assert screening["Subject"] == "Screening cancelled: Nosferatu on Friday 05 March 2027, 19:30 UTC"
    assert "will not take place" in screening.get_content()
    refund_mail = mails[message_id(refund)]
    assert refund_mail["Subject"] == "Your refund of 12.00 EUR is on its way"
    assert "Nosferatu" in refund_mail.get_content() and "C7" in refund_mail.get_content()  # borrowed facts


async def test_a_redelivered_or_republished_event_sends_one_mail(
    app: NotificationApp, js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    envelope = confirmed()
    await jetstream.publish(js, envelope)
    await eventually(lambda: state_is(pool, envelope.id, "SENT"))
    # Published again by a producer retry (deduplicated by Nats-Msg-Id) ...
    assert (await jetstream.publish(js, envelope)).duplicate
    # ... republished under another message id (a relay that lost its dedupe window) ...
    await js.publish(
        "cinema.reservation.confirmed", envelope.SerializeToString(), headers={"Nats-Msg-Id": str(uuid.uuid4())}
    )
    # ... and redelivered after a lost ack (the handler sees the same envelope again).
    handler = NotificationEventHandler(app.deps)
    await handler(envelope, env.unwrap(envelope))
    await eventually(lambda: consumers_idle(js))
    await asyncio.sleep(1.0)  # a second mail would be out by now
    assert sink.count_by_message_id()[message_id(envelope)] == 1
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE event_id = $1", uuid.UUID(envelope.id)) == 1


async def test_with_the_sink_down_delivery_is_retried_with_backoff_and_done_when_it_is_back(
    js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    await sink.stop()
    try:
        envelope = confirmed()
        await jetstream.publish(js, envelope)

        async def retried_twice() -> bool:
            found = await row(pool, envelope.id)
            return found is not None and found["state"] == "RETRYING" and found["attempts"] >= 2

        await eventually(retried_twice)
        found = await row(pool, envelope.id)
        assert found is not None and "unreachable" in found["last_error"]
    finally:
        await sink.start()
    await eventually(lambda: state_is(pool, envelope.id, "SENT"))
    assert sink.count_by_message_id()[message_id(envelope)] == 1


async def test_a_bouncing_address_is_parked_with_the_error_after_max_attempts(
    js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    envelope = confirmed(email_="nobody@bounce.invalid")
    await jetstream.publish(js, envelope)
    await eventually(lambda: state_is(pool, envelope.id, "PARKED"))
    found = await row(pool, envelope.id)
    assert found is not None and found["attempts"] == 4
    assert found["last_error"].startswith("SMTP 550") and "after 4 attempts" in found["last_error"]
    assert message_id(envelope) not in sink.count_by_message_id()


async def test_an_event_without_address_is_recorded_failed_and_sends_nothing(
    js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    envelope = confirmed(email_="")
    await jetstream.publish(js, envelope)
    await eventually(lambda: state_is(pool, envelope.id, "PARKED"))
    found = await row(pool, envelope.id)
    assert found is not None and found["attempts"] == 0 and found["last_error"].startswith("NO_RECIPIENT")
    assert message_id(envelope) not in sink.count_by_message_id()


async def test_a_poison_event_is_dead_lettered_and_the_stream_moves_on(
    js: JetStreamContext, sink: SmtpSink, pool: asyncpg.Pool
) -> None:
    poison_id = str(uuid.uuid4())
    poison = await js.publish(
        "cinema.reservation.confirmed", b"\xff\x00 not an envelope", headers={"Nats-Msg-Id": poison_id}
    )
    after = confirmed()
    await jetstream.publish(js, after)
    await eventually(lambda: state_is(pool, after.id, "SENT"))

    durable = f"test-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe("cinema.deadletter.notification", durable=durable, stream="CINEMA_DEAD_LETTER")
    parked = []
    try:
        for _ in range(20):
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                break
            for msg in msgs:
                headers = msg.headers or {}
                if headers.get("Cinema-Original-Sequence") == str(poison.seq):
                    parked.append(headers)
                await msg.ack()
    finally:
        await sub.unsubscribe()
        await js.delete_consumer("CINEMA_DEAD_LETTER", durable)
    [headers] = parked
    assert headers["Cinema-Dead-Letter-Consumer"] == "notification"
    assert headers["Cinema-Dead-Letter-Error"].startswith("undecodable")


async def test_a_crash_after_the_handover_is_parked_in_doubt_and_never_resent(
    app: NotificationApp, postgres_server: Server, sink: SmtpSink
) -> None:
    # A delivery log of its own, so the running app's loop cannot take the row first.
    url = await create_database(postgres_server, "notification_crash")
    await migrate(url)
    pool = await pg.create_pool(url, min_size=1, max_size=4)
    try:
        store = PgDeliveryLog(pool)
        deps = dataclasses.replace(app.deps, log=store, lease_s=0.5)
        envelope = confirmed()
        facts = facts_of(envelope, env.unwrap(envelope))
        assert facts is not None
        assert await record_notification(facts, deps)

        # A replica claims it, records the handover and sends ... then dies before SENT.
        [claim] = await store.claim_due(10, deps.lease_s)
        assert await store.begin_handover(claim)
        mail = OutgoingMail(message_id(envelope), claim.recipient, claim.subject, claim.body)

        async def go_ahead() -> bool:
            return True

        await app.sender.send(mail, go_ahead)

        # The lease runs out; another replica's loop settles the doubt instead of resending.
        await asyncio.sleep(1.0)
        other = Dispatcher(deps, idle_s=0.1, settle_every_s=0.1)
        runner = asyncio.create_task(other.run())
        try:
            await eventually(lambda: state_is(pool, envelope.id, "PARKED"))
            await asyncio.sleep(1.0)
        finally:
            other.stop()
            await runner
        found = await row(pool, envelope.id)
        assert found is not None and found["last_error"].startswith("IN_DOUBT") and found["attempts"] == 1
        assert sink.count_by_message_id()[message_id(envelope)] == 1

        # A stalled replica whose lease ran out before the handover finds its claim gone.
        second = confirmed()
        second_facts = facts_of(second, env.unwrap(second))
        assert second_facts is not None
        await record_notification(second_facts, deps)
        [stale] = await store.claim_due(10, 0.2)
        await asyncio.sleep(0.5)
        [fresh] = await store.claim_due(10, 30)
        assert fresh.id == stale.id and fresh.attempts == 2
        assert not await store.begin_handover(stale)
        assert await store.begin_handover(fresh)
    finally:
        await pool.close()


def token(issuer: LocalTokenIssuer, subject: str) -> tuple[tuple[str, str]]:
    return issuer.metadata(issuer.mint(subject, roles={"customer"}, ttl_s=600))


async def test_list_notifications_pages_newest_first_and_shows_only_the_callers(
    js: JetStreamContext, pool: asyncpg.Pool, stub: NotificationServiceAsyncStub, issuer: LocalTokenIssuer
) -> None:
    me, other = f"pager-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    mine = [confirmed(customer_id=me) for _ in range(7)]
    theirs = [confirmed(customer_id=other) for _ in range(2)]
    for envelope in [*mine, *theirs]:
        await jetstream.publish(js, envelope)
    for envelope in [*mine, *theirs]:
        await eventually(lambda e=envelope: state_is(pool, e.id, "SENT"))  # type: ignore[misc]

    seen: list[pb.Notification] = []
    page_token, pages = "", 0
    while True:
        response = await stub.ListNotifications(
            pb.ListNotificationsRequest(page_size=3, page_token=page_token), metadata=token(issuer, me), timeout=5
        )
        seen.extend(response.notifications)
        pages += 1
        page_token = response.next_page_token
        if not page_token:
            break
    assert pages == 3
    assert {n.event_id for n in seen} == {e.id for e in mine} and len(seen) == 7
    times = [n.create_time.ToDatetime() for n in seen]
    assert times == sorted(times, reverse=True)
    first = seen[0]
    assert first.customer_id == me and first.state == pb.NOTIFICATION_STATE_SENT
    assert first.channel == pb.NOTIFICATION_CHANNEL_EMAIL and first.HasField("send_time")
    assert first.event_type == "cinema.reservation.v1.ReservationConfirmed" and first.recipient == "ada@example.com"

    got = await stub.GetNotification(
        pb.GetNotificationRequest(notification_id=first.id), metadata=token(issuer, me), timeout=5
    )
    assert got.notification == first
    with pytest.raises(grpc.aio.AioRpcError) as not_theirs:
        await stub.GetNotification(
            pb.GetNotificationRequest(notification_id=first.id), metadata=token(issuer, other), timeout=5
        )
    assert not_theirs.value.code() == grpc.StatusCode.NOT_FOUND
    others = await stub.ListNotifications(pb.ListNotificationsRequest(), metadata=token(issuer, other), timeout=5)
    assert {n.event_id for n in others.notifications} == {e.id for e in theirs}

    for request, code in (
        (pb.ListNotificationsRequest(page_size=101), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ListNotificationsRequest(page_token="bogus"), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.ListNotifications(request, metadata=token(issuer, me), timeout=5)
        assert bad.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.ListNotifications(pb.ListNotificationsRequest(), timeout=5)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
