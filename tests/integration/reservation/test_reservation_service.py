"""ReservationService over real gRPC, PostgreSQL, NATS and the real payment service.

The catalog replica is fed by catalog events these tests publish themselves (as the movie
service will); payment is the real service, stopped and restarted where a test needs it down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from nats.js.client import JetStreamContext

from cinema.movie.v1 import events_pb2 as movie_events
from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from cinema.reservation.v1 import events_pb2 as reservation_events
from cinema.reservation.v1 import reservation_pb2 as pb
from services.kit.grpc_errors import find_detail
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.domain.processor import CARD_APPROVED, CARD_INSUFFICIENT_FUNDS
from services.reservation.bootstrap import ReservationApp
from tests.integration.reservation.conftest import Metadata, PaymentService
from tests.integration.reservation.helpers import create_request, events_of, publish, replica_has, schedule, stamp
from tests.support.polling import eventually

if TYPE_CHECKING:
    from cinema.reservation.v1.reservation_pb2_grpc import ReservationServiceAsyncStub as Stub

pytestmark = pytest.mark.integration


def customer(issuer: LocalTokenIssuer, subject: str | None = None) -> Metadata:
    subject = subject or f"customer-{uuid.uuid4().hex[:8]}"
    return issuer.metadata(
        issuer.mint(subject, roles={"customer"}, extra_claims={"email": f"{subject}@example.com"}, ttl_s=600)
    )


def service_token(issuer: LocalTokenIssuer) -> Metadata:
    return issuer.metadata(issuer.mint("test-operator", roles={"manager"}, ttl_s=600))


async def scheduled(js: JetStreamContext, stub: Stub, **options: object) -> str:
    screening_id = await schedule(js, **options)  # type: ignore[arg-type]
    await replica_has(stub, screening_id)
    return screening_id


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is code, caught.value.details()
    return caught.value


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM reservations) AS r, (SELECT count(*) FROM seat_claims) AS c,"
        " (SELECT count(*) FROM outbox) AS o"
    )
    assert row is not None
    return row["r"], row["c"], row["o"]


# ------------------------------------------------------------------------------ replica


async def test_replica_follows_catalog_events(js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer) -> None:
    movie_id = str(uuid.uuid4())
    screening_id = await schedule(js, movie_id=movie_id, title="Metropolis", rows=3, seats_per_row=4, blocked=["A1"])
    availability = await replica_has(stub, screening_id)
    assert availability.seat_map.rows == 3
    assert availability.seat_map.seats_per_row == 4
    assert list(availability.seat_map.blocked_seats) == ["A1"]
    assert availability.total_seat_count == 11
    assert availability.free_seat_count == 11
    assert list(availability.taken_seats) == []
    assert availability.price.minor_units == 1200
    assert availability.price.currency_code == "EUR"

    me = customer(issuer)
    made = await stub.CreateReservation(create_request(screening_id, ["B2"]), metadata=me)
    assert made.reservation.movie_title == "Metropolis"

    # A newer title, then a move to another hall: the reservation shows the screening as it is now.
    await publish(js, movie_events.MovieUpdated(movie_id=movie_id, title="Metropolis (restored)"), movie_id, 2)
    new_time = made.reservation.start_time.ToDatetime() + timedelta(hours=1)
    await publish(
        js,
        movie_events.ScreeningRescheduled(
            screening_id=screening_id, movie_id=movie_id, hall="Hall 7", start_time=stamp(new_time)
        ),
        screening_id,
        2,
    )

    async def moved() -> pb.Reservation | None:
        got = await stub.GetReservation(pb.GetReservationRequest(reservation_id=made.reservation.id), metadata=me)
        r = got.reservation
        return r if r.hall == "Hall 7" and r.movie_title == "Metropolis (restored)" else None

    reservation = await eventually(moved)
    assert reservation.start_time.ToDatetime() == new_time

    # A stale event (older version, e.g. a redelivery) changes nothing.
    await publish(
        js,
        movie_events.ScreeningRescheduled(screening_id=screening_id, hall="Hall 0", start_time=stamp(new_time)),
        screening_id,
        1,
    )
    await asyncio.sleep(0.5)
    got = await stub.GetReservation(pb.GetReservationRequest(reservation_id=made.reservation.id), metadata=me)
    assert got.reservation.hall == "Hall 7"


async def test_screening_cancelled_cancels_its_reservations_and_payment_refunds(
    js: JetStreamContext,
    stub: Stub,
    issuer: LocalTokenIssuer,
    payment_stub: payment_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    made = (await stub.CreateReservation(create_request(screening_id, ["A1", "A2"]), metadata=me)).reservation
    assert made.state == pb.RESERVATION_STATE_CONFIRMED

    await publish(
        js, movie_events.ScreeningCancelled(screening_id=screening_id, reason="projector broke"), screening_id, 2
    )

    async def cancelled() -> pb.Reservation | None:
        got = (await stub.GetReservation(pb.GetReservationRequest(reservation_id=made.id), metadata=me)).reservation
        return got if got.state == pb.RESERVATION_STATE_CANCELLED else None

    reservation = await eventually(cancelled)
    assert reservation.reason == "projector broke"
    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == []
    assert availability.free_seat_count == 0  # nothing can be reserved any more

    [(_envelope, event)] = await events_of(js, "cinema.reservation.cancelled", made.id)
    assert isinstance(event, reservation_events.ReservationCancelled)
    assert event.payment_id == made.payment_id
    await _eventually_refunded(payment_stub, issuer, made.id)

    error = await expect_error(
        stub.CreateReservation(create_request(screening_id, ["C1"]), metadata=me), grpc.StatusCode.FAILED_PRECONDITION
    )
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "SCREENING_CANCELLED"


async def _eventually_refunded(
    payment_stub: payment_pb2_grpc.PaymentServiceAsyncStub, issuer: LocalTokenIssuer, reservation_id: str
) -> None:
    async def refunded() -> bool:
        got = await payment_stub.GetPaymentByReservation(
            payment_pb2.GetPaymentByReservationRequest(reservation_id=reservation_id), metadata=service_token(issuer)
        )
        return got.payment.state == payment_pb2.PAYMENT_STATE_REFUNDED

    await eventually(refunded, within_s=15)


# ------------------------------------------------------------------------------ create


async def test_create_confirmed_publishes_reservation_confirmed(
    js: JetStreamContext,
    stub: Stub,
    issuer: LocalTokenIssuer,
    payment_stub: payment_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    screening_id = await scheduled(js, stub)
    subject = f"customer-{uuid.uuid4().hex[:8]}"
    me = customer(issuer, subject)
    made = (await stub.CreateReservation(create_request(screening_id, ["C3", "A1"]), metadata=me)).reservation
    assert made.state == pb.RESERVATION_STATE_CONFIRMED
    assert list(made.seats) == ["A1", "C3"]
    assert made.customer_id == subject
    assert made.amount.minor_units == 2400 and made.amount.currency_code == "EUR"
    assert made.payment_id and made.hall == "Hall 1" and made.movie_title == "Metropolis"

    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == ["A1", "C3"]
    assert availability.free_seat_count == availability.total_seat_count - 2

    [(envelope, event)] = await events_of(js, "cinema.reservation.confirmed", made.id)
    assert envelope.subject == made.id and envelope.aggregate_id == made.id
    assert envelope.aggregate_version == 1
    assert envelope.source == "//cinema/reservation"
    assert isinstance(event, reservation_events.ReservationConfirmed)
    assert event.customer_email == f"{subject}@example.com"
    assert list(event.seats) == ["A1", "C3"] and event.payment_id == made.payment_id
    assert event.amount.minor_units == 2400

    paid = await payment_stub.GetPaymentByReservation(
        payment_pb2.GetPaymentByReservationRequest(reservation_id=made.id), metadata=service_token(issuer)
    )
    assert paid.payment.state == payment_pb2.PAYMENT_STATE_APPROVED
    assert paid.payment.id == made.payment_id
    assert paid.payment.amount.minor_units == 2400


async def test_declined_card_fails_with_error_info_and_frees_the_seats(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    error = await expect_error(
        stub.CreateReservation(create_request(screening_id, ["A1", "A2"], number=CARD_INSUFFICIENT_FUNDS), metadata=me),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None
    assert info.reason == "PAYMENT_DECLINED"
    assert info.metadata["decline_reason"] == "insufficient_funds"
    reservation_id = info.metadata["reservation"]

    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == []
    got = await stub.GetReservation(pb.GetReservationRequest(reservation_id=reservation_id), metadata=me)
    assert got.reservation.state == pb.RESERVATION_STATE_FAILED
    assert got.reservation.reason == "insufficient_funds"
    [(_envelope, event)] = await events_of(js, "cinema.reservation.failed", reservation_id)
    assert isinstance(event, reservation_events.ReservationFailed)

    # The seats are free for the next customer at once.
    other = (await stub.CreateReservation(create_request(screening_id, ["A1"]), metadata=customer(issuer))).reservation
    assert other.state == pb.RESERVATION_STATE_CONFIRMED


async def test_taken_seat_is_failed_precondition_and_holds_nothing(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await scheduled(js, stub)
    await stub.CreateReservation(create_request(screening_id, ["D4"]), metadata=customer(issuer))
    before = await counts(pool)
    error = await expect_error(
        stub.CreateReservation(create_request(screening_id, ["D3", "D4"]), metadata=customer(issuer)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "SEATS_TAKEN" and info.metadata["seats"] == "D4"
    assert await counts(pool) == before
    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == ["D4"]


async def test_same_request_id_returns_the_same_reservation_and_charges_once(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, payment: PaymentService
) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    request = create_request(screening_id, ["E1", "E2"])
    first, second = await asyncio.gather(
        stub.CreateReservation(request, metadata=me), stub.CreateReservation(request, metadata=me)
    )
    third = await stub.CreateReservation(request, metadata=me)
    assert first.reservation.id == second.reservation.id == third.reservation.id
    assert third.reservation.state == pb.RESERVATION_STATE_CONFIRMED
    assert payment.app is not None
    assert payment.app.processor.charges[first.reservation.id] == 1  # type: ignore[attr-defined]

    # The same key for another request is refused, not silently answered with the first one.
    other = create_request(screening_id, ["E3"], request_id=request.request_id)
    error = await expect_error(stub.CreateReservation(other, metadata=me), grpc.StatusCode.FAILED_PRECONDITION)
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "REQUEST_ID_REUSED"

    # The key is per customer: another customer's identical key is another reservation.
    theirs = await stub.CreateReservation(
        create_request(screening_id, ["E5"], request_id=request.request_id), metadata=customer(issuer)
    )
    assert theirs.reservation.id != first.reservation.id


async def test_concurrent_customers_for_one_seat_one_wins(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await scheduled(js, stub)
    results = await asyncio.gather(
        *(stub.CreateReservation(create_request(screening_id, ["F5"]), metadata=customer(issuer)) for _ in range(8)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, pb.CreateReservationResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 7, [(e.code(), e.details()) for e in lost]
    assert all(e.code() is grpc.StatusCode.FAILED_PRECONDITION for e in lost)
    held = await pool.fetch("SELECT reservation_id FROM seat_claims WHERE screening_id = $1", screening_id)
    assert [str(row["reservation_id"]) for row in held] == [won[0].reservation.id]


# ------------------------------------------------------------------------------ payment down


async def test_payment_down_briefly_answers_unavailable_fast_and_the_reservation_confirms_by_itself(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, payment: PaymentService
) -> None:
    """An outage shorter than the window: the caller hears UNAVAILABLE at once and walks away;
    reservation's own authorization keeps asking and confirms the reservation once payment is back."""
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    await payment.stop()
    try:
        started = time.monotonic()
        await expect_error(
            stub.CreateReservation(create_request(screening_id, ["G7"]), metadata=me), grpc.StatusCode.UNAVAILABLE
        )
        assert time.monotonic() - started < 1.0  # not the 3 s wait: payment cannot be reached
    finally:
        await payment.start()
    page = await stub.ListReservations(pb.ListReservationsRequest(), metadata=me)
    [pending] = list(page.reservations)

    async def settled() -> pb.Reservation | None:
        got = await stub.GetReservation(pb.GetReservationRequest(reservation_id=pending.id), metadata=me)
        return got.reservation if got.reservation.state != pb.RESERVATION_STATE_PENDING else None

    reservation = await eventually(settled)
    assert reservation.state == pb.RESERVATION_STATE_CONFIRMED
    assert payment.app is not None
    assert payment.app.processor.charges[pending.id] == 1  # type: ignore[attr-defined]


async def test_payment_down_past_the_window_answers_unavailable_fast_and_the_reconciler_frees_the_seats(
    js: JetStreamContext,
    stub: Stub,
    issuer: LocalTokenIssuer,
    payment: PaymentService,
    payment_stub: payment_pb2_grpc.PaymentServiceAsyncStub,
    app: ReservationApp,
) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    booked = (await stub.CreateReservation(create_request(screening_id, ["G5"]), metadata=me)).reservation
    await payment.stop()
    try:
        request = create_request(screening_id, ["G1", "G2"])
        started = time.monotonic()
        error = await expect_error(stub.CreateReservation(request, metadata=me), grpc.StatusCode.UNAVAILABLE)
        assert time.monotonic() - started < 1.0
        retry = find_detail(error, error_details_pb2.RetryInfo)
        assert retry is not None and retry.retry_delay.ToTimedelta() > timedelta(0)
        info = find_detail(error, error_details_pb2.ErrorInfo)
        assert info is not None and info.reason == "PAYMENT_UNAVAILABLE"
        page = await stub.ListReservations(pb.ListReservationsRequest(), metadata=me)
        [pending] = [r for r in page.reservations if r.id != booked.id]
        assert pending.state == pb.RESERVATION_STATE_PENDING

        # Cancelling works while payment is down; the refund follows when payment is back.
        cancelled = await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=booked.id), metadata=me)
        assert cancelled.reservation.state == pb.RESERVATION_STATE_CANCELLED

        # The reconciler cannot settle while payment is down: the seats stay held (never sold twice).
        await asyncio.sleep(2.0)
        availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
        assert list(availability.taken_seats) == ["G1", "G2"]
        # Down past the last moment an authorization may be sent (the outage window is over).
        s = app.settings
        last_send_s = s.pending_window_s - s.payment_work_limit_s - s.payment_deadline_s - 0.5
        await asyncio.sleep(max(0.0, started + last_send_s - time.monotonic()) + 0.5)
    finally:
        await payment.start()

    # Payment back: the reconciler learns it never saw the authorization and fails the reservation.
    async def settled() -> pb.Reservation | None:
        got = await stub.GetReservation(pb.GetReservationRequest(reservation_id=pending.id), metadata=me)
        return got.reservation if got.reservation.state != pb.RESERVATION_STATE_PENDING else None

    reservation = await eventually(settled)
    assert reservation.state == pb.RESERVATION_STATE_FAILED
    assert reservation.reason == "PAYMENT_NOT_COMPLETED"
    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == []
    # A retry of the same request now tells what became of it.
    error = await expect_error(stub.CreateReservation(request, metadata=me), grpc.StatusCode.FAILED_PRECONDITION)
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "PAYMENT_NOT_COMPLETED"
    # And reservations succeed again (the channel reconnected).
    again = await stub.CreateReservation(create_request(screening_id, ["G1", "G2"]), metadata=me)
    assert again.reservation.state == pb.RESERVATION_STATE_CONFIRMED
    await _eventually_refunded(payment_stub, issuer, booked.id)


async def test_a_payment_slower_than_its_deadline_still_sells_the_seat(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, payment: PaymentService
) -> None:
    """Payment answers after reservation's 800 ms deadline but within the caller's wait: the
    next attempt joins the authorization in progress, and the caller gets CONFIRMED."""
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    assert payment.app is not None
    processor = payment.app.processor
    processor.latency_ms = 1200  # type: ignore[attr-defined]
    try:
        reply = await stub.CreateReservation(create_request(screening_id, ["H3"]), metadata=me, timeout=20)
    finally:
        processor.latency_ms = 0  # type: ignore[attr-defined]
    assert reply.reservation.state == pb.RESERVATION_STATE_CONFIRMED
    assert processor.charges[reply.reservation.id] == 1  # type: ignore[attr-defined]


async def test_a_payment_slower_than_the_callers_wait_is_settled_by_its_outcome(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, payment: PaymentService, app: ReservationApp
) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    assert payment.app is not None
    processor = payment.app.processor
    processor.latency_ms = 4500  # type: ignore[attr-defined]  # past the 3 s wait, inside the 8 s pending window
    request = create_request(screening_id, ["H1"])
    try:
        started = time.monotonic()
        error = await expect_error(stub.CreateReservation(request, metadata=me), grpc.StatusCode.UNAVAILABLE)
        assert time.monotonic() - started < 6.0  # bounded by the wait, not by payment
        assert find_detail(error, error_details_pb2.RetryInfo) is not None
    finally:
        processor.latency_ms = 0  # type: ignore[attr-defined]

    page = await stub.ListReservations(pb.ListReservationsRequest(), metadata=me)
    [pending] = [r for r in page.reservations if r.seats == ["H1"]]

    async def settled() -> pb.Reservation | None:
        got = await stub.GetReservation(pb.GetReservationRequest(reservation_id=pending.id), metadata=me)
        return got.reservation if got.reservation.state != pb.RESERVATION_STATE_PENDING else None

    # Payment finished the authorization after the caller left; the reconciler confirms it by
    # that outcome instead of failing it on a deadline, and the seat stays sold.
    reservation = await eventually(settled, within_s=20)
    assert reservation.state == pb.RESERVATION_STATE_CONFIRMED
    assert processor.charges[pending.id] == 1  # type: ignore[attr-defined]
    # The customer's retry with the same request id gets the eventual result, no second charge.
    again = await stub.CreateReservation(request, metadata=me, timeout=10)
    assert (again.reservation.id, again.reservation.state) == (pending.id, pb.RESERVATION_STATE_CONFIRMED)
    assert processor.charges[pending.id] == 1  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ cancel and reads


async def test_cancel_frees_the_seats_publishes_and_payment_refunds(
    js: JetStreamContext,
    stub: Stub,
    issuer: LocalTokenIssuer,
    payment_stub: payment_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    made = (await stub.CreateReservation(create_request(screening_id, ["J1", "J2"]), metadata=me)).reservation
    cancelled = await stub.CancelReservation(
        pb.CancelReservationRequest(reservation_id=made.id, reason="cannot come"), metadata=me
    )
    assert cancelled.reservation.state == pb.RESERVATION_STATE_CANCELLED
    assert cancelled.reservation.reason == "cannot come"
    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == []

    again = await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=made.id), metadata=me)
    assert again.reservation == cancelled.reservation  # unchanged

    events = await events_of(js, "cinema.reservation.cancelled", made.id)
    [(envelope, event)] = events
    assert envelope.aggregate_version == 2
    assert isinstance(event, reservation_events.ReservationCancelled)
    assert event.reason == "cannot come" and event.payment_id == made.payment_id
    await _eventually_refunded(payment_stub, issuer, made.id)


async def test_another_customers_reservation_is_not_found(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer
) -> None:
    screening_id = await scheduled(js, stub)
    owner = customer(issuer)
    made = (await stub.CreateReservation(create_request(screening_id, ["K1"]), metadata=owner)).reservation
    stranger = customer(issuer)
    await expect_error(
        stub.GetReservation(pb.GetReservationRequest(reservation_id=made.id), metadata=stranger),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        stub.CancelReservation(pb.CancelReservationRequest(reservation_id=made.id), metadata=stranger),
        grpc.StatusCode.NOT_FOUND,
    )
    page = await stub.ListReservations(pb.ListReservationsRequest(), metadata=stranger)
    assert list(page.reservations) == []
    still = await stub.GetReservation(pb.GetReservationRequest(reservation_id=made.id), metadata=owner)
    assert still.reservation.state == pb.RESERVATION_STATE_CONFIRMED
    # A manager may read it.
    seen = await stub.GetReservation(pb.GetReservationRequest(reservation_id=made.id), metadata=service_token(issuer))
    assert seen.reservation.id == made.id


async def test_list_is_paginated_newest_first(js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer) -> None:
    screening_id = await scheduled(js, stub)
    me = customer(issuer)
    made = []
    for seat in ("L1", "L2", "L3", "L4", "L5"):
        made.append((await stub.CreateReservation(create_request(screening_id, [seat]), metadata=me)).reservation.id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListReservations(pb.ListReservationsRequest(page_size=2, page_token=token), metadata=me)
        pages += 1
        seen.extend(r.id for r in page.reservations)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == list(reversed(made))
    everything = await stub.ListReservations(pb.ListReservationsRequest(), metadata=me)
    assert [r.id for r in everything.reservations] == seen and everything.next_page_token == ""

    error = await expect_error(
        stub.ListReservations(pb.ListReservationsRequest(page_token="not-a-token"), metadata=me),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    bad = find_detail(error, error_details_pb2.BadRequest)
    assert bad is not None and bad.field_violations[0].field == "page_token"
    await expect_error(
        stub.ListReservations(pb.ListReservationsRequest(page_size=101), metadata=me), grpc.StatusCode.INVALID_ARGUMENT
    )


# ------------------------------------------------------------------------------ bad input


async def test_bad_input_gets_the_precise_status_and_writes_nothing(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await scheduled(js, stub)
    past_id = await scheduled(js, stub, starts_in=timedelta(hours=-1))
    me = customer(issuer)
    before = await counts(pool)

    async def bad(request: pb.CreateReservationRequest, code: grpc.StatusCode, field: str | None = None) -> None:
        error = await expect_error(stub.CreateReservation(request, metadata=me), code)
        if field is not None:
            details = find_detail(error, error_details_pb2.BadRequest)
            assert details is not None, error.details()
            assert field in [v.field for v in details.field_violations], details

    await bad(create_request(str(uuid.uuid4()), ["A1"]), grpc.StatusCode.NOT_FOUND)
    await bad(create_request(screening_id, ["Z9"]), grpc.StatusCode.INVALID_ARGUMENT, "seats[0]")
    await bad(create_request(screening_id, ["A1", "B5"]), grpc.StatusCode.INVALID_ARGUMENT, "seats[1]")  # blocked
    await bad(create_request(screening_id, []), grpc.StatusCode.INVALID_ARGUMENT, "seats")
    await bad(
        create_request(screening_id, [f"C{n}" for n in range(1, 11)] + ["D1"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "seats",
    )
    await bad(create_request(screening_id, ["A1", "A1"]), grpc.StatusCode.INVALID_ARGUMENT)
    await bad(create_request(screening_id, ["a-1"]), grpc.StatusCode.INVALID_ARGUMENT, "seats[0]")
    await bad(create_request("not-a-uuid", ["A1"]), grpc.StatusCode.INVALID_ARGUMENT, "screening_id")
    await bad(create_request(screening_id, ["A1"], request_id="x"), grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    no_card = create_request(screening_id, ["A1"])
    no_card.ClearField("card")
    await bad(no_card, grpc.StatusCode.INVALID_ARGUMENT, "card")
    bad_card = create_request(screening_id, ["A1"], number="12")
    await bad(bad_card, grpc.StatusCode.INVALID_ARGUMENT, "card.number")

    error = await expect_error(
        stub.CreateReservation(create_request(past_id, ["A1"]), metadata=me), grpc.StatusCode.FAILED_PRECONDITION
    )
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "SCREENING_STARTED"

    await expect_error(stub.CreateReservation(create_request(screening_id, ["A1"])), grpc.StatusCode.UNAUTHENTICATED)
    await expect_error(
        stub.CreateReservation(create_request(screening_id, ["A1"]), metadata=(("authorization", "Bearer nope"),)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await expect_error(stub.ListReservations(pb.ListReservationsRequest()), grpc.StatusCode.UNAUTHENTICATED)
    await expect_error(
        stub.GetReservation(pb.GetReservationRequest(reservation_id="nope"), metadata=me),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        stub.CancelReservation(pb.CancelReservationRequest(reservation_id=str(uuid.uuid4())), metadata=me),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id="nope")), grpc.StatusCode.INVALID_ARGUMENT
    )
    await expect_error(
        stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )
    # A token of a role that is neither customer nor manager (another service) may not book.
    await expect_error(
        stub.CreateReservation(
            create_request(screening_id, ["A1"]),
            metadata=issuer.metadata(issuer.mint("payment", roles={"service"})),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert await counts(pool) == before


async def test_invalid_card_per_payment_frees_the_seats(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer
) -> None:
    """A card the contract accepts but payment rejects (expired): INVALID_ARGUMENT, nothing held."""
    screening_id = await scheduled(js, stub)
    request = create_request(screening_id, ["M1"], number=CARD_APPROVED)
    request.card.expiry_year = 2020
    await expect_error(stub.CreateReservation(request, metadata=customer(issuer)), grpc.StatusCode.INVALID_ARGUMENT)
    availability = await stub.GetSeatAvailability(pb.GetSeatAvailabilityRequest(screening_id=screening_id))
    assert list(availability.taken_seats) == []
