"""The gRPC face of the viewpage: `cinema.viewpage.v1.BoardService`.

GetBoard and GetMovieBoard are public (the board is for everyone, signed in or not);
ListCustomerReservations needs the caller's token and lists the caller's own reservations.
Handlers validate, run the query and translate the domain views to the contract's messages.

GetBoard and GetMovieBoard answer with bytes the store keeps ready (the board's entries are
materialised as serialized `BoardMovie`s when their events arrive): their handlers are
registered with a pass-through response serializer and append the few scalar fields of the
response to those bytes (a protobuf message is the concatenation of its fields, so
`movies` + `as_of_time` + `next_page_token` ... parses as one `GetBoardResponse`). No message
is built or serialized per movie on a read.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.money_pb2 import Money
from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1 import reservation_pb2
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from services.kit.auth import current_caller
from services.kit.validation import validate
from services.viewpage.domain import board as views
from services.viewpage.domain import events as ev
from services.viewpage.domain import sales as sales_views
from services.viewpage.service_layer import queries, sales
from services.viewpage.service_layer.ports import ReadModelStore

SERVICE_NAME = board_pb2.DESCRIPTOR.services_by_name["BoardService"].full_name
PUBLIC_METHODS = (f"/{SERVICE_NAME}/GetBoard", f"/{SERVICE_NAME}/GetMovieBoard")

_RESERVATION_STATES = {
    ev.RESERVATION_CONFIRMED: reservation_pb2.RESERVATION_STATE_CONFIRMED,
    ev.RESERVATION_CANCELLED: reservation_pb2.RESERVATION_STATE_CANCELLED,
    ev.RESERVATION_FAILED: reservation_pb2.RESERVATION_STATE_FAILED,
}
_PAYMENT_STATES = {
    ev.PAYMENT_APPROVED: payment_pb2.PAYMENT_STATE_APPROVED,
    ev.PAYMENT_DECLINED: payment_pb2.PAYMENT_STATE_DECLINED,
    ev.PAYMENT_REFUNDED: payment_pb2.PAYMENT_STATE_REFUNDED,
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def movie_board_bytes(entry: bytes) -> bytes:
    """GetMovieBoardResponse{movie: entry} on the wire (field 1, length-delimited)."""
    return b"\x0a" + _varint(len(entry)) + entry


def board_bytes(page: queries.BoardPage) -> bytes:
    """GetBoardResponse on the wire: the store's `movies` bytes, then the response's own fields."""
    tail = board_pb2.GetBoardResponse(next_page_token=page.next_page_token, days=page.days, time_zone=page.time_zone)
    if page.as_of_ms:
        tail.as_of_time.CopyFrom(_timestamp(page.as_of_ms))
    return page.movies + tail.SerializeToString()


def _pass_through(response: bytes) -> bytes:
    return response


def _timestamp(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


# The domain views as the contract's messages: the reference the store's materialised entries are
# tested against (tests/integration/viewpage/test_board_pages.py), no longer the read path.
def screening_message(view: views.ScreeningView) -> board_pb2.BoardScreening:
    return board_pb2.BoardScreening(
        screening_id=view.screening_id,
        hall=view.hall,
        start_time=_timestamp(view.start_time_ms),
        price=Money(minor_units=view.price_minor, currency_code=view.currency),
        free_seats=view.free_seats,
        total_seats=view.total_seats,
    )


def movie_message(view: views.MovieView) -> board_pb2.BoardMovie:
    return board_pb2.BoardMovie(
        movie_id=view.movie_id,
        title=view.title,
        genres=view.genres,
        duration_minutes=view.duration_minutes,
        poster_url=view.poster_url,
        review_count=view.review_count,
        average_rating=view.average_rating,
        screenings=[screening_message(s) for s in view.screenings],
    )


def reservation_message(view: views.ReservationView) -> board_pb2.CustomerReservation:
    message = board_pb2.CustomerReservation(
        reservation_id=view.reservation_id,
        screening_id=view.screening_id,
        movie_id=view.movie_id,
        movie_title=view.movie_title,
        hall=view.hall,
        seats=view.seats,
        state=_RESERVATION_STATES.get(view.state, reservation_pb2.RESERVATION_STATE_UNSPECIFIED),
        payment_state=_PAYMENT_STATES.get(view.payment_state, payment_pb2.PAYMENT_STATE_UNSPECIFIED),
        update_time=_timestamp(view.update_time_ms),
    )
    if view.start_time_ms:
        message.start_time.CopyFrom(_timestamp(view.start_time_ms))
    if view.currency:
        message.amount.CopyFrom(Money(minor_units=view.amount_minor, currency_code=view.currency))
    return message


def _money(minor: int, currency: str) -> Money:
    return Money(minor_units=minor, currency_code=currency)


def sales_message(view: sales_views.Sales) -> board_pb2.Sales:
    currency = view.currency
    return board_pb2.Sales(
        seats_sold=view.seats_sold,
        seats_free=view.seats_free,
        seats_blocked=view.seats_blocked,
        reservations_confirmed=view.reservations_confirmed,
        cancellations=view.cancellations,
        revenue=_money(view.revenue_minor, currency),
        refunds=_money(view.refunds_minor, currency),
        net_revenue=_money(view.net_revenue_minor, currency),
        refund_count=view.refund_count,
        timeline=[
            board_pb2.SalesPoint(
                start_time=_timestamp(point.start_ms),
                seats_sold=point.seats_sold,
                revenue=_money(point.revenue_minor, currency),
                refunds=_money(point.refunds_minor, currency),
            )
            for point in view.timeline
        ],
    )


def screening_sales_message(view: sales_views.ScreeningSales) -> board_pb2.ScreeningSales:
    message = board_pb2.ScreeningSales(
        screening_id=view.screening_id,
        movie_id=view.movie_id,
        hall=view.hall,
        cancelled=view.cancelled,
        sales=sales_message(view.sales),
    )
    if view.start_time_ms:
        message.start_time.CopyFrom(_timestamp(view.start_time_ms))
    return message


class BoardServicer(board_pb2_grpc.BoardServiceServicer):
    def __init__(self, store: ReadModelStore, time_zone: str = "UTC") -> None:
        self._store = store
        self._zone_name = time_zone
        self._zone = ZoneInfo(time_zone)

    async def GetBoard(  # type: ignore[override]  # answers serialized bytes (see the module's doc)
        self, request: board_pb2.GetBoardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        validate(request)
        page = await queries.get_board(
            self._store,
            queries.BoardFilter(request.genre, request.showing_on, request.movie_id),
            request.page_size,
            request.page_token,
            zone=self._zone,
            zone_name=self._zone_name,
        )
        return board_bytes(page)

    async def GetMovieBoard(  # type: ignore[override]  # answers serialized bytes
        self, request: board_pb2.GetMovieBoardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        validate(request)
        return movie_board_bytes(await queries.get_movie_board(self._store, request.movie_id))

    async def ListCustomerReservations(
        self, request: board_pb2.ListCustomerReservationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> board_pb2.ListCustomerReservationsResponse:
        caller = current_caller()
        validate(request)
        page = await queries.list_customer_reservations(self._store, caller, request.page_size, request.page_token)
        return board_pb2.ListCustomerReservationsResponse(
            reservations=[reservation_message(r) for r in page.reservations], next_page_token=page.next_page_token
        )

    async def GetScreeningSales(
        self, request: board_pb2.GetScreeningSalesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> board_pb2.GetScreeningSalesResponse:
        caller = current_caller()
        validate(request)
        answer = await sales.get_screening_sales(self._store, caller, request.screening_id)
        response = board_pb2.GetScreeningSalesResponse(screening=screening_sales_message(answer.screening))
        if answer.as_of_ms:
            response.as_of_time.CopyFrom(_timestamp(answer.as_of_ms))
        return response

    async def GetMovieSales(
        self, request: board_pb2.GetMovieSalesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> board_pb2.GetMovieSalesResponse:
        caller = current_caller()
        validate(request)
        answer = await sales.get_movie_sales(self._store, caller, request.movie_id)
        movie = answer.movie
        response = board_pb2.GetMovieSalesResponse(
            movie_id=movie.movie_id,
            title=movie.title,
            sales=sales_message(movie.sales),
            screenings=[screening_sales_message(s) for s in movie.screenings],
        )
        if answer.as_of_ms:
            response.as_of_time.CopyFrom(_timestamp(answer.as_of_ms))
        return response


def register(server: grpc.aio.Server, store: ReadModelStore, time_zone: str = "UTC") -> list[str]:
    """Add the servicer to `server`; returns the service names for health and reflection.

    The generated `add_BoardServiceServicer_to_server`, but GetBoard and GetMovieBoard send the
    bytes their handlers return as they are.
    """
    servicer = BoardServicer(store, time_zone)
    handlers = {
        "GetBoard": grpc.unary_unary_rpc_method_handler(
            servicer.GetBoard,
            request_deserializer=board_pb2.GetBoardRequest.FromString,
            response_serializer=_pass_through,
        ),
        "GetMovieBoard": grpc.unary_unary_rpc_method_handler(
            servicer.GetMovieBoard,
            request_deserializer=board_pb2.GetMovieBoardRequest.FromString,
            response_serializer=_pass_through,
        ),
        "ListCustomerReservations": grpc.unary_unary_rpc_method_handler(
            servicer.ListCustomerReservations,
            request_deserializer=board_pb2.ListCustomerReservationsRequest.FromString,
            response_serializer=board_pb2.ListCustomerReservationsResponse.SerializeToString,
        ),
        "GetScreeningSales": grpc.unary_unary_rpc_method_handler(
            servicer.GetScreeningSales,
            request_deserializer=board_pb2.GetScreeningSalesRequest.FromString,
            response_serializer=board_pb2.GetScreeningSalesResponse.SerializeToString,
        ),
        "GetMovieSales": grpc.unary_unary_rpc_method_handler(
            servicer.GetMovieSales,
            request_deserializer=board_pb2.GetMovieSalesRequest.FromString,
            response_serializer=board_pb2.GetMovieSalesResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]  # not in the stubs
    return [SERVICE_NAME]
