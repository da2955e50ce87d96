"""The board through gRPC, built from events published on real NATS into real Redis.

The seed scenario: register a movie, schedule a screening, reserve, review, cancel — the board
shows each step. And the API's rules: public board reads, the caller's own reservations only
with a token, NotFound and InvalidArgument.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from nats.js.client import JetStreamContext

from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1 import reservation_pb2
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from services.kit.testing_tokens import LocalTokenIssuer
from services.viewpage.bootstrap import ViewpageApp
from services.viewpage.settings import ViewpageSettings
from tests.integration.viewpage import helpers as h
from tests.support.polling import eventually

if TYPE_CHECKING:
    from cinema.viewpage.v1.board_pb2_grpc import BoardServiceAsyncStub

pytestmark = pytest.mark.integration


@pytest.fixture
async def stub(settings: ViewpageSettings, js: JetStreamContext) -> AsyncIterator[BoardServiceAsyncStub]:
    app = ViewpageApp(settings)
    async with app.host() as host, grpc.aio.insecure_channel(host.address) as channel:
        yield board_pb2_grpc.BoardServiceStub(channel)


async def test_seed_scenario_board_shows_each_step(
    stub: BoardServiceAsyncStub, js: JetStreamContext, issuer: LocalTokenIssuer
) -> None:
    movie_id, screening_id, reservation_id, review_id = h.new_id(), h.new_id(), h.new_id(), h.new_id()
    customer = issuer.metadata(issuer.mint("customer-1", roles={"customer"}, ttl_s=600))

    async def movie_board() -> board_pb2.BoardMovie:
        response = await stub.GetMovieBoard(board_pb2.GetMovieBoardRequest(movie_id=movie_id))
        return response.movie

    async def movie_shown() -> bool:
        try:
            await movie_board()
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return False
        return True

    # 1. Register the movie: on its own page, not yet on the board (no screening to come).
    await h.publish_in_order(js, [h.movie_registered(movie_id, "Metropolis", ["drama", "sci-fi"])])
    await eventually(movie_shown)
    movie = await movie_board()
    assert (movie.title, list(movie.genres), movie.review_count, len(movie.screenings)) == (
        "Metropolis",
        ["drama", "sci-fi"],
        0,
        0,
    )
    assert not (await stub.GetBoard(board_pb2.GetBoardRequest())).movies

    # 2. Schedule a screening: 10 x 10 seats, all free.
    await h.publish_in_order(js, [h.screening_scheduled(screening_id, movie_id)])

    async def board_movies() -> list[board_pb2.BoardMovie]:
        return list((await stub.GetBoard(board_pb2.GetBoardRequest())).movies)

    async def has_screening() -> bool:
        return bool(await board_movies())

    await eventually(has_screening)
    [shown] = await board_movies()
    [screening] = shown.screenings
    assert (screening.screening_id, screening.free_seats, screening.total_seats) == (screening_id, 100, 100)
    assert screening.price.minor_units == 1200
    assert (await stub.GetBoard(board_pb2.GetBoardRequest(genre="SCI-FI"))).movies
    assert not (await stub.GetBoard(board_pb2.GetBoardRequest(genre="comedy"))).movies

    # 3. Reserve three seats: 97 free, the customer sees the reservation confirmed.
    seats = ["A1", "A2", "A3"]
    await h.publish_in_order(js, [h.reservation_confirmed(reservation_id, screening_id, movie_id, seats)])

    async def free_seats(expected: int) -> bool:
        return (await movie_board()).screenings[0].free_seats == expected

    await eventually(lambda: free_seats(97))
    listed = await stub.ListCustomerReservations(board_pb2.ListCustomerReservationsRequest(), metadata=customer)
    [entry] = listed.reservations
    assert (entry.reservation_id, list(entry.seats), entry.state, entry.hall) == (
        reservation_id,
        seats,
        reservation_pb2.RESERVATION_STATE_CONFIRMED,
        "Hall 1",
    )
    assert entry.amount.minor_units == 3600

    # 4. A review: count 1, average 4.
    await h.publish_in_order(js, [h.review_posted(review_id, movie_id, 4)])

    async def reviewed() -> bool:
        return (await movie_board()).review_count == 1

    await eventually(reviewed)
    assert (await movie_board()).average_rating == 4.0

    # 5. Cancel (and its refund): seats free again, the entry cancelled and refunded, hall kept.
    payment_id = h.new_id()
    await h.publish_in_order(
        js,
        [
            h.reservation_cancelled(reservation_id, screening_id, movie_id, seats),
            h.payment_refunded(payment_id, reservation_id),
        ],
    )
    await eventually(lambda: free_seats(100))

    async def refunded() -> bool:
        page = await stub.ListCustomerReservations(board_pb2.ListCustomerReservationsRequest(), metadata=customer)
        return bool(page.reservations[0].payment_state == payment_pb2.PAYMENT_STATE_REFUNDED)

    await eventually(refunded)
    [entry] = (
        await stub.ListCustomerReservations(board_pb2.ListCustomerReservationsRequest(), metadata=customer)
    ).reservations
    assert entry.state == reservation_pb2.RESERVATION_STATE_CANCELLED
    assert entry.hall == "Hall 1"  # the cancellation names no hall: the confirmation's stays
    board = await stub.GetBoard(board_pb2.GetBoardRequest())
    assert board.as_of_time.seconds > 0


async def test_customer_reservations_need_a_token_and_are_the_callers_own(
    stub: BoardServiceAsyncStub, js: JetStreamContext, issuer: LocalTokenIssuer
) -> None:
    movie_id, screening_id = h.new_id(), h.new_id()
    mine = [h.new_id() for _ in range(5)]
    made = datetime.now(UTC)
    await h.publish_in_order(
        js,
        [h.screening_scheduled(screening_id, movie_id)]
        + [
            h.reservation_confirmed(rid, screening_id, movie_id, [f"B{n + 1}"], "ada", time=made + timedelta(seconds=n))
            for n, rid in enumerate(mine)
        ]
        + [h.reservation_confirmed(h.new_id(), screening_id, movie_id, ["C1"], "bob")],
    )
    ada = issuer.metadata(issuer.mint("ada", roles={"customer"}, ttl_s=600))

    async def all_there() -> bool:
        page = await stub.ListCustomerReservations(
            board_pb2.ListCustomerReservationsRequest(page_size=100), metadata=ada
        )
        return len(page.reservations) == 5

    await eventually(all_there)
    # Paging, newest first.
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListCustomerReservations(
            board_pb2.ListCustomerReservationsRequest(page_size=2, page_token=token), metadata=ada
        )
        seen += [r.reservation_id for r in page.reservations]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(mine))

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ListCustomerReservations(board_pb2.ListCustomerReservationsRequest())
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await stub.ListCustomerReservations(board_pb2.ListCustomerReservationsRequest(page_token="nope!"), metadata=ada)
    assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as too_big:
        await stub.ListCustomerReservations(board_pb2.ListCustomerReservationsRequest(page_size=101), metadata=ada)
    assert too_big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as not_uuid:
        await stub.GetMovieBoard(board_pb2.GetMovieBoardRequest(movie_id="x"))
    assert not_uuid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GetMovieBoard(board_pb2.GetMovieBoardRequest(movie_id=h.new_id()))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
