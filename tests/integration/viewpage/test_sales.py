"""The manager's sales (issue 16) through gRPC, projected from events on real NATS into real Redis.

Events arrive shuffled and some twice (as redeliveries do); the sales must come out exact, the
same again after a rebuild by replay, and only for managers.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie
from cinema.payment.v1 import events_pb2 as payment
from cinema.reservation.v1 import events_pb2 as reservation
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from services.kit.testing_tokens import LocalTokenIssuer
from services.viewpage.adapters.redis_store import RedisReadModel
from services.viewpage.adapters.replay import JetStreamHistory
from services.viewpage.bootstrap import ViewpageApp
from services.viewpage.service_layer.rebuild import rebuild
from services.viewpage.settings import ViewpageSettings
from tests.integration.viewpage import helpers as h
from tests.support.polling import eventually

if TYPE_CHECKING:
    from cinema.viewpage.v1.board_pb2_grpc import BoardServiceAsyncStub

pytestmark = pytest.mark.integration

PRICE = 1200


@pytest.fixture
async def stub(settings: ViewpageSettings, js: JetStreamContext) -> AsyncIterator[BoardServiceAsyncStub]:
    app = ViewpageApp(settings)
    async with app.host() as host, grpc.aio.insecure_channel(host.address) as channel:
        yield board_pb2_grpc.BoardServiceStub(channel)


def scheduled(screening_id: str, movie_id: str, start: datetime, blocked: list[str]) -> EventEnvelope:
    event = movie.ScreeningScheduled(
        screening_id=screening_id,
        movie_id=movie_id,
        movie_title="Metropolis",
        duration_minutes=153,
        hall="Hall 1",
        start_time=h._ts(start),
        seat_map=SeatMap(rows=5, seats_per_row=10, blocked_seats=blocked),
        price=Money(minor_units=PRICE, currency_code="EUR"),
    )
    return h.wrap(event, screening_id, 1, "movie")


def authorized(payment_id: str, reservation_id: str, seats: int, at: datetime) -> EventEnvelope:
    event = payment.PaymentAuthorized(
        payment_id=payment_id,
        reservation_id=reservation_id,
        customer_id="customer-1",
        amount=Money(minor_units=PRICE * seats, currency_code="EUR"),
        card_last_four="4242",
    )
    return h.wrap(event, payment_id, 1, "payment", at)


def refunded(payment_id: str, reservation_id: str, seats: int, at: datetime) -> EventEnvelope:
    event = payment.PaymentRefunded(
        payment_id=payment_id,
        reservation_id=reservation_id,
        customer_id="customer-1",
        amount=Money(minor_units=PRICE * seats, currency_code="EUR"),
    )
    return h.wrap(event, payment_id, 2, "payment", at)


def failed(reservation_id: str, screening_id: str) -> EventEnvelope:
    event = reservation.ReservationFailed(
        reservation_id=reservation_id, customer_id="customer-9", screening_id=screening_id, seats=["E1"], reason="X"
    )
    return h.wrap(event, reservation_id, 2, "reservation")


async def test_sales_of_a_screening_and_a_movie_from_shuffled_repeated_events(
    stub: BoardServiceAsyncStub, js: JetStreamContext, issuer: LocalTokenIssuer, store: RedisReadModel
) -> None:
    movie_id, first, second = h.new_id(), h.new_id(), h.new_id()
    hour = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=3)
    events = [
        h.movie_registered(movie_id, "Metropolis"),
        scheduled(first, movie_id, datetime.now(UTC) + timedelta(days=1), ["A1", "A2"]),
        scheduled(second, movie_id, datetime.now(UTC) + timedelta(days=2), []),
    ]
    # first: three sold in hour 0 (2 + 3 + 1 seats), the 3-seat one cancelled and refunded in hour 1;
    # a failed reservation; second: one sale of 4 seats in hour 1.
    sales = [(first, ["B1", "B2"], hour), (first, ["C1", "C2", "C3"], hour), (first, ["D1"], hour)]
    sales.append((second, ["A1", "A2", "A3", "A4"], hour + timedelta(hours=1)))
    made: list[tuple[str, str, list[str], datetime, str]] = []
    for screening_id, seats, at in sales:
        rid, pid = h.new_id(), h.new_id()
        made.append((rid, screening_id, seats, at, pid))
        events.append(h.reservation_confirmed(rid, screening_id, movie_id, seats, time=at))
        events.append(authorized(pid, rid, len(seats), at))
    cancelled_rid, _, cancelled_seats, _, cancelled_pid = made[1]
    later = hour + timedelta(hours=1, minutes=10)
    events.append(h.reservation_cancelled(cancelled_rid, first, movie_id, cancelled_seats))
    events.append(refunded(cancelled_pid, cancelled_rid, len(cancelled_seats), later))
    events.append(failed(h.new_id(), first))
    replayed = events + random.sample(events[3:], 5)  # some delivered twice
    random.shuffle(replayed)
    await h.publish_in_order(js, events[:1])
    await h.publish_all(js, replayed)

    manager = issuer.metadata(issuer.mint("manager-1", roles={"manager"}, ttl_s=600))

    async def first_settled() -> bool:
        try:
            answer = await stub.GetScreeningSales(
                board_pb2.GetScreeningSalesRequest(screening_id=first), metadata=manager
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return False
        s = answer.screening.sales
        return s.refund_count == 1 and s.cancellations == 1 and s.revenue.minor_units == 6 * PRICE

    await eventually(first_settled)
    answer = await stub.GetScreeningSales(board_pb2.GetScreeningSalesRequest(screening_id=first), metadata=manager)
    s = answer.screening.sales
    assert answer.screening.movie_id == movie_id and answer.screening.hall == "Hall 1"
    assert (s.seats_sold, s.seats_free, s.seats_blocked) == (3, 45, 2)
    assert (s.reservations_confirmed, s.cancellations, s.refund_count) == (2, 1, 1)
    assert (s.revenue.minor_units, s.refunds.minor_units, s.net_revenue.minor_units) == (
        6 * PRICE,
        3 * PRICE,
        3 * PRICE,
    )
    assert s.revenue.currency_code == "EUR"
    start = int(hour.timestamp()) // 3600 * 3600
    assert [(p.start_time.seconds, p.seats_sold, p.revenue.minor_units, p.refunds.minor_units) for p in s.timeline] == [
        (start, 6, 6 * PRICE, 0),
        (start + 3600, 0, 0, 3 * PRICE),
    ]

    async def movie_settled() -> bool:
        answer = await stub.GetMovieSales(board_pb2.GetMovieSalesRequest(movie_id=movie_id), metadata=manager)
        return answer.sales.seats_sold == 7

    await eventually(movie_settled)
    whole = await stub.GetMovieSales(board_pb2.GetMovieSalesRequest(movie_id=movie_id), metadata=manager)
    assert whole.title == "Metropolis"
    assert [x.screening_id for x in whole.screenings] == [first, second]  # earliest first
    total = whole.sales
    assert (total.seats_sold, total.seats_free, total.seats_blocked) == (7, 45 + 46, 2)
    assert (total.revenue.minor_units, total.refunds.minor_units) == (10 * PRICE, 3 * PRICE)
    assert [(p.start_time.seconds, p.seats_sold) for p in total.timeline] == [(start, 6), (start + 3600, 4)]

    # The same sales from a model rebuilt by replaying the streams.
    before = (answer, whole)
    await rebuild(store, JetStreamHistory(js))
    again = await stub.GetScreeningSales(board_pb2.GetScreeningSalesRequest(screening_id=first), metadata=manager)
    whole_again = await stub.GetMovieSales(board_pb2.GetMovieSalesRequest(movie_id=movie_id), metadata=manager)
    assert again.screening == before[0].screening
    assert whole_again.sales == before[1].sales and list(whole_again.screenings) == list(before[1].screenings)


async def test_sales_are_for_managers_only_and_bad_ids_are_named(
    stub: BoardServiceAsyncStub, js: JetStreamContext, issuer: LocalTokenIssuer
) -> None:
    movie_id, screening_id = h.new_id(), h.new_id()
    await h.publish_in_order(js, [h.movie_registered(movie_id), h.screening_scheduled(screening_id, movie_id)])
    manager = issuer.metadata(issuer.mint("manager-1", roles={"manager"}, ttl_s=600))

    async def known() -> bool:
        try:
            await stub.GetScreeningSales(
                board_pb2.GetScreeningSalesRequest(screening_id=screening_id), metadata=manager
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return False
        return True

    await eventually(known)
    empty = await stub.GetMovieSales(board_pb2.GetMovieSalesRequest(movie_id=movie_id), metadata=manager)
    assert (empty.sales.seats_sold, empty.sales.seats_free, empty.sales.revenue.minor_units) == (0, 100, 0)

    customer = issuer.metadata(issuer.mint("customer-1", roles={"customer"}, ttl_s=600))

    async def status_of(call: Awaitable[object]) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        return caught.value.code()

    def screening(sid: str) -> board_pb2.GetScreeningSalesRequest:
        return board_pb2.GetScreeningSalesRequest(screening_id=sid)

    def movie(mid: str) -> board_pb2.GetMovieSalesRequest:
        return board_pb2.GetMovieSalesRequest(movie_id=mid)

    for metadata, code in ((customer, grpc.StatusCode.PERMISSION_DENIED), (None, grpc.StatusCode.UNAUTHENTICATED)):
        assert await status_of(stub.GetScreeningSales(screening(screening_id), metadata=metadata)) == code
        assert await status_of(stub.GetMovieSales(movie(movie_id), metadata=metadata)) == code
    not_found, invalid = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
    assert await status_of(stub.GetScreeningSales(screening(h.new_id()), metadata=manager)) == not_found
    assert await status_of(stub.GetScreeningSales(screening("nope"), metadata=manager)) == invalid
    assert await status_of(stub.GetMovieSales(movie(h.new_id()), metadata=manager)) == not_found
    assert await status_of(stub.GetMovieSales(movie(""), metadata=manager)) == invalid
