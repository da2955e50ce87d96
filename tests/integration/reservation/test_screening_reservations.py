"""The manager's view of booking: ListScreeningReservations over real gRPC, PostgreSQL, NATS and
the real payment service (issue 16).

Customers book, one cancels, one is declined; a manager then lists the screening's reservations
page by page and by state, and the answers are compared with the reservation database itself.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext

from cinema.reservation.v1 import reservation_pb2 as pb
from services.kit.testing_tokens import LocalTokenIssuer
from services.payment.domain.processor import CARD_DECLINED
from tests.integration.reservation.conftest import Metadata
from tests.integration.reservation.helpers import create_request
from tests.integration.reservation.test_reservation_service import customer, expect_error, scheduled

if TYPE_CHECKING:
    from cinema.reservation.v1.reservation_pb2_grpc import ReservationServiceAsyncStub as Stub

pytestmark = pytest.mark.integration


def manager(issuer: LocalTokenIssuer) -> Metadata:
    return issuer.metadata(issuer.mint(f"manager-{uuid.uuid4().hex[:6]}", roles={"manager"}, ttl_s=600))


async def all_pages(stub: Stub, token: Metadata, request: pb.ListScreeningReservationsRequest) -> list[pb.Reservation]:
    found: list[pb.Reservation] = []
    while True:
        page = await stub.ListScreeningReservations(request, metadata=token)
        assert len(page.reservations) <= (request.page_size or 50)
        found.extend(page.reservations)
        if not page.next_page_token:
            return found
        following = pb.ListScreeningReservationsRequest()
        following.CopyFrom(request)  # the same filter, from where the page ended
        following.page_token = page.next_page_token
        request = following


async def test_a_manager_lists_a_screenings_reservations_by_page_and_state(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer, pool: asyncpg.Pool
) -> None:
    screening_id = await scheduled(js, stub)
    other_screening = await scheduled(js, stub)
    booked: dict[str, str] = {}  # reservation id -> customer
    for n in range(5):
        who = f"customer-{uuid.uuid4().hex[:8]}"
        made = await stub.CreateReservation(create_request(screening_id, [f"C{n + 1}"]), metadata=customer(issuer, who))
        booked[made.reservation.id] = who
    cancelled_id = next(iter(booked))
    owner = booked[cancelled_id]
    await stub.CancelReservation(
        pb.CancelReservationRequest(reservation_id=cancelled_id, reason="plans changed"),
        metadata=customer(issuer, owner),
    )
    await expect_error(
        stub.CreateReservation(create_request(screening_id, ["D1"], number=CARD_DECLINED), metadata=customer(issuer)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # Someone else's screening stays out of the list.
    await stub.CreateReservation(create_request(other_screening, ["C1"]), metadata=customer(issuer))

    token = manager(issuer)
    listed = await all_pages(stub, token, pb.ListScreeningReservationsRequest(screening_id=screening_id, page_size=2))
    rows = await pool.fetch(
        "SELECT id, customer_id, state FROM reservations WHERE screening_id = $1 ORDER BY created_at DESC, id DESC",
        screening_id,
    )
    assert [r.id for r in listed] == [str(row["id"]) for row in rows]
    assert len(listed) == 6  # five booked (one cancelled since), one failed
    assert {r.customer_id for r in listed if r.id in booked} == set(booked.values())
    assert all(r.screening_id == screening_id for r in listed)
    by_state = {row["state"]: 0 for row in rows}
    for row in rows:
        by_state[row["state"]] += 1
    assert by_state == {"CONFIRMED": 4, "CANCELLED": 1, "FAILED": 1}

    confirmed = await all_pages(
        stub,
        token,
        pb.ListScreeningReservationsRequest(
            screening_id=screening_id, state=pb.RESERVATION_STATE_CONFIRMED, page_size=3
        ),
    )
    assert sorted(r.id for r in confirmed) == sorted(str(row["id"]) for row in rows if row["state"] == "CONFIRMED")
    assert all(r.state == pb.RESERVATION_STATE_CONFIRMED for r in confirmed)
    cancelled = await stub.ListScreeningReservations(
        pb.ListScreeningReservationsRequest(screening_id=screening_id, state=pb.RESERVATION_STATE_CANCELLED),
        metadata=token,
    )
    assert [r.id for r in cancelled.reservations] == [cancelled_id]
    assert cancelled.reservations[0].reason == "plans changed"
    assert cancelled.next_page_token == ""


async def test_customers_are_refused_and_bad_requests_are_named(
    js: JetStreamContext, stub: Stub, issuer: LocalTokenIssuer
) -> None:
    screening_id = await scheduled(js, stub)
    await stub.CreateReservation(create_request(screening_id, ["A1"]), metadata=customer(issuer))
    request = pb.ListScreeningReservationsRequest(screening_id=screening_id)
    await expect_error(
        stub.ListScreeningReservations(request, metadata=customer(issuer)), grpc.StatusCode.PERMISSION_DENIED
    )
    await expect_error(stub.ListScreeningReservations(request), grpc.StatusCode.UNAUTHENTICATED)
    token = manager(issuer)
    unknown = pb.ListScreeningReservationsRequest(screening_id=str(uuid.uuid4()))
    await expect_error(stub.ListScreeningReservations(unknown, metadata=token), grpc.StatusCode.NOT_FOUND)
    for bad in (
        pb.ListScreeningReservationsRequest(screening_id="not-a-uuid"),
        pb.ListScreeningReservationsRequest(screening_id=screening_id, page_token="garbage!"),
        pb.ListScreeningReservationsRequest(screening_id=screening_id, page_size=101),
        pb.ListScreeningReservationsRequest(screening_id=screening_id, state=99),  # type: ignore[arg-type]
    ):
        error = await expect_error(
            stub.ListScreeningReservations(bad, metadata=token), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "Traceback" not in (error.details() or "")
